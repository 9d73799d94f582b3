import Foundation

/// Expands command-line input lists into the text files to tokenize.
public enum InputFiles {
  /// Extensions a folder is searched for.
  public static let extensions: Set<String> = ["txt", "jsonl"]

  /// Splits each value at commas, trims spaces, drops empty items, then replaces every folder
  /// by the `.txt` and `.jsonl` files directly inside it (sorted by name, hidden files skipped).
  /// Files named explicitly are kept whatever their extension. The result keeps the order given
  /// and lists each file once. Throws when a path does not exist, when a folder contains no
  /// such file, or when nothing is left.
  public static func expand(_ values: [String]) throws -> [URL] {
    let manager = FileManager.default
    var result: [URL] = []
    var seen = Set<String>()
    func add(_ url: URL) {
      if seen.insert(url.standardizedFileURL.path).inserted { result.append(url) }
    }
    let items = values.flatMap { $0.split(separator: ",") }
      .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    for item in items {
      var isFolder: ObjCBool = false
      guard manager.fileExists(atPath: item, isDirectory: &isFolder) else {
        throw TrainingError.fileOperationFailed(path: item, operation: "find the input", reason: "no such file or folder")
      }
      let url = URL(fileURLWithPath: item)
      guard isFolder.boolValue else {
        add(url)
        continue
      }
      let names: [String]
      do {
        names = try manager.contentsOfDirectory(atPath: item)
      } catch {
        throw TrainingError.fileOperationFailed(path: item, operation: "list", reason: error.localizedDescription)
      }
      let matching = names.filter { !$0.hasPrefix(".") && extensions.contains(($0 as NSString).pathExtension.lowercased()) }
        .sorted()
      guard !matching.isEmpty else {
        throw TrainingError.fileOperationFailed(
          path: item, operation: "find inputs in", reason: "the folder contains no .txt or .jsonl file")
      }
      for name in matching { add(url.appendingPathComponent(name)) }
    }
    guard !result.isEmpty else {
      throw TrainingError.invalidConfiguration(name: "input list", value: "empty", expected: "at least one file or folder")
    }
    return result
  }
}
