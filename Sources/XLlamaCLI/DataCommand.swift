import Foundation
import XLlama

enum DataCommand: Command {
  static let name = "data"
  static let subcommand: String? = "prepare"
  static let summary = "Tokenize .txt and .jsonl files into training and validation shards."
  static let usage = "prepare --model PATH --input FILES --out DIR [--field NAME] [--validation F] [--seed N] [--split-paragraphs] [--latin1] [--shard-tokens N] [--force]"
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(name: "--input", valueName: "FILES", help: "comma-separated files and folders (a folder gives its *.txt and *.jsonl)"),
    OptionSpec(name: "--out", valueName: "DIR", help: "folder for the shards and manifest.json"),
    OptionSpec(name: "--field", valueName: "NAME", help: "jsonl field holding the text", defaultDescription: "text"),
    OptionSpec(name: "--validation", valueName: "F", help: "share of documents held out for validation, 0 ... 1", defaultDescription: "0.01"),
    OptionSpec(name: "--seed", valueName: "N", help: "seed of the validation split", defaultDescription: "0"),
    OptionSpec(name: "--split-paragraphs", valueName: nil, help: "treat blank-line separated blocks of a .txt file as documents (default: one document per file)"),
    OptionSpec(name: "--latin1", valueName: nil, help: "read lines that are not valid UTF-8 as Latin-1 instead of stopping"),
    OptionSpec(name: "--shard-tokens", valueName: "N", help: "ids per shard before a new one starts", defaultDescription: "50000000"),
    OptionSpec(name: "--force", valueName: nil, help: "overwrite a folder that already contains a manifest.json"),
  ]

  static func run(_ options: ParsedOptions) throws {
    let modelPath = try options.required("--model")
    let inputs = try InputFiles.expand([try options.required("--input")])
    let out = URL(fileURLWithPath: try options.required("--out"))
    if FileManager.default.fileExists(atPath: out.appendingPathComponent(DataManifest.fileName).path) && !options.flag("--force") {
      throw CommandLineError.conflicting("\(out.path) already contains prepared data (\(DataManifest.fileName)); choose another --out or pass --force")
    }
    var preparation = DataPreparationOptions()
    preparation.jsonlField = options.string("--field") ?? "text"
    let fraction = try options.float("--validation", default: 0.01)
    guard (0...1).contains(fraction) else {
      throw CommandLineError.invalidValue(option: "--validation", value: "\(fraction)", expected: "a share between 0 and 1")
    }
    preparation.validationFraction = Double(fraction)
    preparation.seed = try unsignedOption(options, "--seed", default: 0)
    preparation.textSplit = options.flag("--split-paragraphs") ? .paragraphs : .wholeFile
    preparation.decodeInvalidUTF8AsLatin1 = options.flag("--latin1")
    preparation.maxTokensPerShard = try options.integer("--shard-tokens", default: 50_000_000, range: 1...Int(Int32.max))

    let (configuration, _, tokenizer, _, _) = try ModelLoader.open(modelPath)
    guard let eos = tokenizer.eosTokenID ?? configuration.eosTokenIDs.first else {
      throw CommandLineError.conflicting("\(modelPath) names no end-of-sequence token (tokenizer or config); documents cannot be separated")
    }
    let start = Date()
    stderrLine("tokenizing \(inputs.count) file\(inputs.count == 1 ? "" : "s") with the tokenizer of \(modelPath) (EOS id \(eos))")
    let preparer = DataPreparer(vocabSize: configuration.vocabularySize, eosId: eos, options: preparation) { tokenizer.encode($0) }
    let manifest = try preparer.prepare(inputs: inputs, outputDirectory: out)
    let seconds = Date().timeIntervalSince(start)
    let documents = manifest.inputs.reduce(0) { $0 + $1.documents }
    stderrLine(String(
      format: "wrote %d training tokens in %d shard(s) and %d validation tokens in %d shard(s) from %d documents to %@ in %.1f s",
      manifest.trainTokens, manifest.train.count, manifest.validationTokens, manifest.validation.count, documents, out.path, seconds))
  }
}

/// Reads an option holding a non-negative integer that may use all 64 bits.
func unsignedOption(_ options: ParsedOptions, _ name: String, default fallback: UInt64) throws -> UInt64 {
  guard let text = options.string(name) else { return fallback }
  guard let value = UInt64(text) else {
    throw CommandLineError.invalidValue(option: name, value: text, expected: "a non-negative integer")
  }
  return value
}
