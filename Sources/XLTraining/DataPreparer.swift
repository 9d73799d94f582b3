import Foundation
import XLTensors

/// Choices for turning text files into token shards.
public struct DataPreparationOptions: Sendable, Equatable {
  /// The rule that divides a `.txt` file into documents.
  public enum TextSplit: String, Sendable, Codable {
    /// The whole file is one document (the default); a file is read whole, so memory grows with
    /// the largest single file.
    case wholeFile
    /// Each block of lines separated by one or more blank lines is a document; the file is
    /// streamed line by line.
    case paragraphs
  }

  public var textSplit: TextSplit = .wholeFile
  /// Field of each jsonl object that contains the document text.
  public var jsonlField = "text"
  /// Share of documents routed to the validation shards, in [0, 1].
  public var validationFraction = 0.01
  /// Seed of the hash that picks validation documents.
  public var seed: UInt64 = 0
  /// A shard is closed before a document that would take it past this many ids; a single
  /// longer document gets a shard of its own.
  public var maxTokensPerShard = 50_000_000
  /// Reads a text line that is not valid UTF-8 as Latin-1 (one byte, one character) instead of
  /// rejecting the file; old Project Gutenberg and web texts mix the two encodings.
  public var decodeInvalidUTF8AsLatin1 = false

  public init() {}
}

/// The JSON file (`manifest.json`) written beside the shards.
public struct DataManifest: Codable, Sendable, Equatable {
  public struct Shard: Codable, Sendable, Equatable {
    public var file: String
    public var tokens: Int
    public var documents: Int
  }
  public struct Input: Codable, Sendable, Equatable {
    public var path: String
    public var documents: Int
    public var tokens: Int
  }

  public var version = 1
  public var vocabSize: Int
  public var eosId: Int
  /// "uint16" or "uint32".
  public var dtype: String
  public var train: [Shard]
  public var validation: [Shard]
  public var inputs: [Input]

  public var trainTokens: Int { train.reduce(0) { $0 + $1.tokens } }
  public var validationTokens: Int { validation.reduce(0) { $0 + $1.tokens } }

  enum CodingKeys: String, CodingKey {
    case version, dtype, train, validation, inputs
    case vocabSize = "vocab_size"
    case eosId = "eos_id"
  }

  public static let fileName = "manifest.json"

  public static func load(from directory: URL) throws -> DataManifest {
    let url = directory.appendingPathComponent(fileName)
    do {
      return try JSONDecoder().decode(DataManifest.self, from: Data(contentsOf: url))
    } catch {
      throw TrainingError.fileOperationFailed(
        path: url.path, operation: "read the data manifest", reason: "\(error)")
    }
  }
}

/// Tokenizes `.txt` and `.jsonl` files into train and validation shards with bounded memory.
///
/// Every document is tokenized by the closure and followed by `eosId`. Each document goes to
/// validation when a seeded hash of its UTF-8 bytes falls below `validationFraction`, so the
/// split depends only on the text and the seed, not on file order. jsonl files are streamed
/// line by line, skipping blank lines. Each other line must be a JSON object
/// whose `options.jsonlField` is a string. Files with another extension are read as text. Shards are
/// named `train-00000.bin`, `validation-00000.bin`, …
public struct DataPreparer {
  public let tokenize: (String) throws -> [Int]
  public let vocabSize: Int
  public let eosId: Int
  public let options: DataPreparationOptions

  public init(
    vocabSize: Int, eosId: Int, options: DataPreparationOptions = DataPreparationOptions(),
    tokenize: @escaping (String) throws -> [Int]
  ) {
    self.tokenize = tokenize
    self.vocabSize = vocabSize
    self.eosId = eosId
    self.options = options
  }

  /// Writes the shards and `manifest.json` into `outputDirectory` (created if needed) and
  /// returns the manifest.
  public func prepare(inputs: [URL], outputDirectory: URL) throws -> DataManifest {
    guard eosId >= 0, eosId < vocabSize else {
      throw TrainingError.invalidConfiguration(
        name: "EOS id", value: "\(eosId)", expected: "an id in 0..<\(vocabSize)")
    }
    guard (0...1).contains(options.validationFraction) else {
      throw TrainingError.invalidConfiguration(
        name: "validation fraction", value: "\(options.validationFraction)", expected: "0 ... 1")
    }
    guard options.maxTokensPerShard > 0 else {
      throw TrainingError.invalidConfiguration(
        name: "shard size", value: "\(options.maxTokensPerShard)", expected: "at least 1 token")
    }
    do {
      try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
    } catch {
      throw TrainingError.fileOperationFailed(
        path: outputDirectory.path, operation: "create the folder", reason: error.localizedDescription)
    }

    let train = ShardSetWriter(
      prefix: "train", directory: outputDirectory, vocabSize: vocabSize,
      maxTokens: options.maxTokensPerShard)
    let validation = ShardSetWriter(
      prefix: "validation", directory: outputDirectory, vocabSize: vocabSize,
      maxTokens: options.maxTokensPerShard)
    var inputRecords: [DataManifest.Input] = []

    for input in inputs {
      var record = DataManifest.Input(path: input.path, documents: 0, tokens: 0)
      try forEachDocument(in: input) { text, location in
        var ids = try tokenize(text)
        ids.append(eosId)
        let target = isValidation(text) ? validation : train
        try target.add(ids, source: location)
        record.documents += 1
        record.tokens += ids.count
      }
      inputRecords.append(record)
    }

    let manifest = DataManifest(
      vocabSize: vocabSize, eosId: eosId,
      dtype: TokenShard.bytesPerId(vocabSize: vocabSize) == 2 ? "uint16" : "uint32",
      train: try train.finish(), validation: try validation.finish(), inputs: inputRecords)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(
      try encoder.encode(manifest), to: outputDirectory.appendingPathComponent(DataManifest.fileName))
    return manifest
  }

  /// Decides whether a document goes to validation: SplitMix64 of (FNV-1a of its bytes XOR seed),
  /// mapped to [0, 1), below the fraction.
  public func isValidation(_ text: String) -> Bool {
    if options.validationFraction <= 0 { return false }
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in text.utf8 {
      hash ^= UInt64(byte)
      hash &*= 0x0000_0100_0000_01B3
    }
    let unit = Double(SplitMix64.mix(hash ^ options.seed) >> 11) * 0x1.0p-53
    return unit < options.validationFraction
  }

  /// Calls `body` with each document's text and its location (`path` or `path:line`).
  func forEachDocument(in url: URL, _ body: (String, String) throws -> Void) throws {
    let path = url.path
    if url.pathExtension.lowercased() == "jsonl" {
      try LineReader.forEachLine(of: url, latin1Fallback: options.decodeInvalidUTF8AsLatin1) { line, number in
        if line.allSatisfy({ $0 == " " || $0 == "\t" }) { return }
        let text = try jsonlText(line, path: path, lineNumber: number)
        try body(text, "\(path):\(number)")
      }
      return
    }
    switch options.textSplit {
    case .wholeFile:
      var lines: [String] = []
      try LineReader.forEachLine(of: url, latin1Fallback: options.decodeInvalidUTF8AsLatin1) { line, _ in
        lines.append(line)
      }
      let text = lines.joined(separator: "\n")
      if !text.isEmpty { try body(text, path) }
    case .paragraphs:
      var paragraph: [String] = []
      var firstLine = 0
      try LineReader.forEachLine(of: url, latin1Fallback: options.decodeInvalidUTF8AsLatin1) { line, number in
        if line.allSatisfy({ $0 == " " || $0 == "\t" }) {
          if !paragraph.isEmpty { try body(paragraph.joined(separator: "\n"), "\(path):\(firstLine)") }
          paragraph.removeAll()
        } else {
          if paragraph.isEmpty { firstLine = number }
          paragraph.append(line)
        }
      }
      if !paragraph.isEmpty { try body(paragraph.joined(separator: "\n"), "\(path):\(firstLine)") }
    }
  }

  private func jsonlText(_ line: String, path: String, lineNumber: Int) throws -> String {
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: Data(line.utf8))
    } catch {
      throw TrainingError.malformedJSONLine(
        path: path, line: lineNumber, reason: "invalid JSON (\(error.localizedDescription))")
    }
    guard let dictionary = object as? [String: Any] else {
      throw TrainingError.malformedJSONLine(
        path: path, line: lineNumber, reason: "expected a JSON object")
    }
    guard let text = dictionary[options.jsonlField] as? String else {
      let reason = dictionary[options.jsonlField] == nil ? "missing" : "not a string"
      throw TrainingError.malformedJSONLine(
        path: path, line: lineNumber, reason: "field '\(options.jsonlField)' is \(reason)")
    }
    return text
  }
}

/// Writes numbered shards of one split, starting a new one when the current one is full.
final class ShardSetWriter {
  let prefix: String
  let directory: URL
  let vocabSize: Int
  let maxTokens: Int
  private var current: TokenShardWriter?
  private var currentDocuments = 0
  private var finished: [DataManifest.Shard] = []

  init(prefix: String, directory: URL, vocabSize: Int, maxTokens: Int) {
    self.prefix = prefix
    self.directory = directory
    self.vocabSize = vocabSize
    self.maxTokens = maxTokens
  }

  func add(_ ids: [Int], source: String) throws {
    if let writer = current, writer.count > 0, writer.count + ids.count > maxTokens {
      try closeCurrent()
    }
    if current == nil {
      let name = String(format: "%@-%05d.bin", prefix, finished.count)
      current = try TokenShardWriter(url: directory.appendingPathComponent(name), vocabSize: vocabSize)
    }
    try current!.append(ids, source: source)
    currentDocuments += 1
  }

  private func closeCurrent() throws {
    guard let writer = current else { return }
    try writer.finish()
    finished.append(.init(file: writer.url.lastPathComponent, tokens: writer.count, documents: currentDocuments))
    current = nil
    currentDocuments = 0
  }

  func finish() throws -> [DataManifest.Shard] {
    try closeCurrent()
    return finished
  }
}

/// Streams a file's lines in 1 MiB reads, so memory stays bounded by the longest line.
enum LineReader {
  /// Calls `body` with each line (without "\n" or "\r\n") and its 1-based number. A line that
  /// is not valid UTF-8 is an error, or with `latin1Fallback` is read as Latin-1.
  static func forEachLine(of url: URL, latin1Fallback: Bool = false, _ body: (String, Int) throws -> Void) throws {
    let handle: FileHandle
    do {
      handle = try FileHandle(forReadingFrom: url)
    } catch {
      throw TrainingError.fileOperationFailed(
        path: url.path, operation: "open", reason: error.localizedDescription)
    }
    defer { try? handle.close() }

    var pending: [UInt8] = []
    var lineNumber = 0
    func emit(_ bytes: ArraySlice<UInt8>) throws {
      lineNumber += 1
      var line = bytes
      if line.last == 0x0D { line = line.dropLast() }
      var decoded = String(validating: line, as: UTF8.self)
      if decoded == nil && latin1Fallback {
        decoded = String(String.UnicodeScalarView(line.map { Unicode.Scalar($0) }))
      }
      guard let text = decoded else {
        throw TrainingError.malformedJSONLine(
          path: url.path, line: lineNumber,
          reason: "line is not valid UTF-8 (to read such lines as Latin-1, pass --latin1 to 'xllama data prepare')")
      }
      try body(text, lineNumber)
    }

    while true {
      let chunk: Data?
      do {
        chunk = try handle.read(upToCount: 1 << 20)
      } catch {
        throw TrainingError.fileOperationFailed(
          path: url.path, operation: "read", reason: error.localizedDescription)
      }
      guard let chunk, !chunk.isEmpty else { break }
      pending.append(contentsOf: chunk)
      var start = 0
      while let newline = pending[start...].firstIndex(of: 0x0A) {
        try emit(pending[start..<newline])
        start = newline + 1
      }
      pending.removeFirst(start)
    }
    if !pending.isEmpty { try emit(pending[...]) }
  }
}
