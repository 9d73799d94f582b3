import Foundation
import XLlama

enum InspectCommand: Command {
  static let name = "inspect"
  static let summary = "Show a model's architecture, tensors and metadata without running it."
  static let usage = "--model PATH [--tensors] [--metadata] [--json]"
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(name: "--tensors", valueName: nil, help: "list every tensor with its shape and storage type"),
    OptionSpec(name: "--metadata", valueName: nil, help: "list the file's metadata (GGUF keys or config.json)"),
    OptionSpec(name: "--json", valueName: nil, help: "print one JSON object instead of text"),
  ]

  static func run(_ options: ParsedOptions) throws {
    let path = try options.required("--model")
    let (c, weights, tokenizer, template, format) = try ModelLoader.open(path)
    var report: [String: Any] = [
      "path": path, "format": format,
      "architecture": c.isStudent ? "xLlama (mLSTM mixer)" : "Llama (attention)",
      "config": c.configJSON(),
      "parameters": parameterCount(c),
      "vocabulary": tokenizer.vocabularySize,
      "chat_template": template != nil,
    ]
    var tensorRows: [[String: Any]] = []
    if options.flag("--tensors") {
      for name in weights.tensorNames {
        var row: [String: Any] = ["name": name]
        if let gguf = weights as? GGUFWeights, let ggufName = gguf.ggufName(for: name), let info = gguf.file.info(named: ggufName) {
          row["shape"] = info.shape
          row["type"] = "\(info.type)"
          row["gguf_name"] = ggufName
        } else if let sharded = weights as? ShardedSafetensors, let info = try sharded.info(named: name) {
          row["shape"] = info.shape
          row["type"] = info.dtype.rawValue
        } else if let file = weights as? SafetensorsFile, let info = file.info(named: name) {
          row["shape"] = info.shape
          row["type"] = info.dtype.rawValue
        }
        tensorRows.append(row)
      }
      report["tensors"] = tensorRows
    }
    var metadataRows: [String: String] = [:]
    if options.flag("--metadata") {
      if let gguf = weights as? GGUFWeights {
        for key in gguf.file.metadataKeys {
          guard let value = gguf.file.metadata[key] else { continue }
          metadataRows[key] = describe(value)
        }
      } else if let data = try? Data(contentsOf: URL(fileURLWithPath: path).appendingPathComponent("config.json")),
        let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
      {
        for (key, value) in json { metadataRows[key] = "\(value)" }
      }
      report["metadata"] = metadataRows
    }
    if options.flag("--json") {
      print(jsonText(report))
      return
    }

    print("model:        \(path) (\(format))")
    print("architecture: \(report["architecture"]!)")
    print("size:         \(formatCount(parameterCount(c)))")
    print("layers \(c.layerCount), width \(c.hiddenSize), MLP \(c.intermediateSize), heads \(c.headCount) (\(c.keyValueHeadCount) key/value) of \(c.headDim), vocabulary \(c.vocabularySize)")
    if c.isStudent {
      print("mLSTM: gate soft cap \(c.gateSoftCap), chunk \(c.chunkSize), eps \(c.cellEps); no context limit")
      if let initialization = c.gateInitialization { print("gate initialization: \(initialization)") }
    } else {
      print("rotary theta \(c.ropeTheta), context \(c.maxPositionEmbeddings), tied embeddings: \(c.tieWordEmbeddings)")
    }
    print("RMSNorm eps \(c.rmsNormEps); chat template: \(template != nil ? "yes" : "no"); EOS ids \(c.eosTokenIDs)")
    for row in tensorRows {
      let shape = (row["shape"] as? [Int]).map { "\($0)" } ?? "?"
      print("  \(row["name"]!)  \(shape)  \(row["type"] ?? "")")
    }
    for key in metadataRows.keys.sorted() { print("  \(key) = \(metadataRows[key]!)") }
  }

  static func describe(_ value: GGUFValue) -> String {
    if let array = value.array {
      let head = array.prefix(5).map(describe).joined(separator: ", ")
      return "[\(head)\(array.count > 5 ? ", … (\(array.count) items)" : "")]"
    }
    if let text = value.string { return text.count > 120 ? String(text.prefix(120)) + "…" : text }
    if let number = value.int { return "\(number)" }
    if let number = value.double { return "\(number)" }
    if let flag = value.bool { return "\(flag)" }
    return "\(value)"
  }
}
