import Foundation

/// The architecture of a Llama-family teacher or an xLlama student.
///
/// Read from a Hugging Face `config.json` or from GGUF metadata. Configs in the wild put the
/// rotary base in `rope_theta` or `rope_parameters.rope_theta`, may leave `head_dim` implied
/// (hidden size ÷ heads) and may omit `num_key_value_heads` (then it equals the head count);
/// all of these are accepted.
public struct ModelConfiguration: Sendable, Equatable {
  /// `llama` for a teacher, `xllama` for a student.
  public var modelType: String
  public var hiddenSize: Int
  public var intermediateSize: Int
  public var layerCount: Int
  public var headCount: Int
  public var keyValueHeadCount: Int
  public var headDim: Int
  public var vocabularySize: Int
  public var rmsNormEps: Float
  public var ropeTheta: Double
  public var tieWordEmbeddings: Bool
  /// Maximum positions the teacher's rotary embedding was trained for; the student has none.
  public var maxPositionEmbeddings: Int
  public var bosTokenID: Int?
  public var eosTokenIDs: [Int]

  // Student-only fields (defaults of the xLlama recipe).
  /// `c` in the gate soft cap `c · tanh(x / c)`.
  public var gateSoftCap: Float = 15
  /// ε added to the mLSTM normalizer.
  public var cellEps: Float = 1e-6
  /// Chunk length of the chunkwise mLSTM form used for prefill.
  public var chunkSize: Int = 64
  /// Description of the student's gate initialization, recorded by `linearize`.
  public var gateInitialization: String?

  public var isStudent: Bool { modelType == "xllama" }
  /// Query heads sharing one key/value head.
  public var groupSize: Int { headCount / keyValueHeadCount }

  public init(
    modelType: String = "llama", hiddenSize: Int, intermediateSize: Int, layerCount: Int,
    headCount: Int, keyValueHeadCount: Int? = nil, headDim: Int? = nil, vocabularySize: Int,
    rmsNormEps: Float = 1e-5, ropeTheta: Double = 10000, tieWordEmbeddings: Bool = true,
    maxPositionEmbeddings: Int = 2048, bosTokenID: Int? = nil, eosTokenIDs: [Int] = []
  ) {
    self.modelType = modelType
    self.hiddenSize = hiddenSize
    self.intermediateSize = intermediateSize
    self.layerCount = layerCount
    self.headCount = headCount
    self.keyValueHeadCount = keyValueHeadCount ?? headCount
    self.headDim = headDim ?? (headCount > 0 ? hiddenSize / headCount : 0)
    self.vocabularySize = vocabularySize
    self.rmsNormEps = rmsNormEps
    self.ropeTheta = ropeTheta
    self.tieWordEmbeddings = tieWordEmbeddings
    self.maxPositionEmbeddings = maxPositionEmbeddings
    self.bosTokenID = bosTokenID
    self.eosTokenIDs = eosTokenIDs
  }

  /// Checks that the sizes are positive and the heads divide evenly.
  public func validate(source: String) throws {
    let positive: [(String, Int)] = [
      ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
      ("num_hidden_layers", layerCount), ("num_attention_heads", headCount),
      ("num_key_value_heads", keyValueHeadCount), ("head_dim", headDim),
      ("vocab_size", vocabularySize),
    ]
    for (key, value) in positive where value <= 0 {
      throw ModelError.invalidConfiguration(source: source, key: key, reason: "is \(value), expected a positive integer")
    }
    if headCount % keyValueHeadCount != 0 {
      throw ModelError.invalidConfiguration(
        source: source, key: "num_key_value_heads",
        reason: "\(keyValueHeadCount) does not divide num_attention_heads \(headCount)")
    }
    if isStudent && headCount * headDim != hiddenSize {
      throw ModelError.invalidConfiguration(
        source: source, key: "num_attention_heads",
        reason: "\(headCount) heads of \(headDim) do not divide hidden_size \(hiddenSize)")
    }
    if headDim % 2 != 0 && !isStudent {
      throw ModelError.invalidConfiguration(
        source: source, key: "head_dim", reason: "\(headDim) is odd; rotary embeddings need an even width")
    }
  }
}

extension ModelConfiguration {
  /// Parses a Hugging Face `config.json`; `source` names the file in errors.
  public init(configJSON data: Data, source: String) throws {
    guard let object = try? JSONSerialization.jsonObject(with: data),
      let json = object as? [String: Any]
    else {
      throw ModelError.invalidConfiguration(source: source, key: "", reason: "is not a JSON object")
    }
    func integer(_ key: String) throws -> Int {
      guard let value = json[key] else {
        throw ModelError.invalidConfiguration(source: source, key: key, reason: "is missing")
      }
      guard let number = value as? NSNumber, let exact = Int(exactly: number.doubleValue) else {
        throw ModelError.invalidConfiguration(source: source, key: key, reason: "is \(value), expected an integer")
      }
      return exact
    }
    func optionalInteger(_ key: String) throws -> Int? {
      guard let value = json[key], !(value is NSNull) else { return nil }
      return try integer(key)
    }
    func number(_ value: Any?, key: String) throws -> Double? {
      guard let value, !(value is NSNull) else { return nil }
      guard let number = value as? NSNumber else {
        throw ModelError.invalidConfiguration(source: source, key: key, reason: "is \(value), expected a number")
      }
      return number.doubleValue
    }

    let modelType = (json["model_type"] as? String) ?? "llama"
    guard ["llama", "xllama"].contains(modelType) else {
      throw ModelError.invalidConfiguration(
        source: source, key: "model_type", reason: "is '\(modelType)', expected 'llama' or 'xllama'")
    }
    var theta = try number(json["rope_theta"], key: "rope_theta")
    if theta == nil, let parameters = json["rope_parameters"] as? [String: Any] {
      theta = try number(parameters["rope_theta"], key: "rope_parameters.rope_theta")
    }
    var eos: [Int] = []
    if let single = json["eos_token_id"] as? NSNumber {
      eos = [single.intValue]
    } else if let many = json["eos_token_id"] as? [NSNumber] {
      eos = many.map(\.intValue)
    }

    self.init(
      modelType: modelType,
      hiddenSize: try integer("hidden_size"),
      intermediateSize: try integer("intermediate_size"),
      layerCount: try integer("num_hidden_layers"),
      headCount: try integer("num_attention_heads"),
      keyValueHeadCount: try optionalInteger("num_key_value_heads"),
      headDim: try optionalInteger("head_dim"),
      vocabularySize: try integer("vocab_size"),
      rmsNormEps: Float(try number(json["rms_norm_eps"], key: "rms_norm_eps") ?? 1e-5),
      ropeTheta: theta ?? 10000,
      tieWordEmbeddings: (json["tie_word_embeddings"] as? Bool) ?? (modelType == "llama"),
      maxPositionEmbeddings: try optionalInteger("max_position_embeddings") ?? 2048,
      bosTokenID: (json["bos_token_id"] as? NSNumber)?.intValue,
      eosTokenIDs: eos)
    if let cap = try number(json["gate_soft_cap"], key: "gate_soft_cap") { gateSoftCap = Float(cap) }
    if let eps = try number(json["eps"], key: "eps") { cellEps = Float(eps) }
    if let chunk = try optionalInteger("chunk_size") { chunkSize = chunk }
    gateInitialization = json["gate_initialization"] as? String
    if isStudent, (json["apply_rope"] as? Bool) == true {
      throw ModelError.invalidConfiguration(
        source: source, key: "apply_rope", reason: "is true; only students without rotary embeddings are supported")
    }
    if chunkSize <= 0 {
      throw ModelError.invalidConfiguration(source: source, key: "chunk_size", reason: "is \(chunkSize), expected a positive integer")
    }
    try validate(source: source)
  }

  /// Returns the `config.json` object of this configuration, with Hugging Face key names.
  public func configJSON() -> [String: Any] {
    var json: [String: Any] = [
      "model_type": modelType,
      "architectures": [isStudent ? "xLlamaForCausalLM" : "LlamaForCausalLM"],
      "hidden_size": hiddenSize,
      "intermediate_size": intermediateSize,
      "num_hidden_layers": layerCount,
      "num_attention_heads": headCount,
      "num_key_value_heads": keyValueHeadCount,
      "head_dim": headDim,
      "vocab_size": vocabularySize,
      "rms_norm_eps": shortestDouble(rmsNormEps),
      "rope_theta": ropeTheta,
      "tie_word_embeddings": tieWordEmbeddings,
      "max_position_embeddings": maxPositionEmbeddings,
      "hidden_act": "silu",
    ]
    if let bosTokenID { json["bos_token_id"] = bosTokenID }
    if eosTokenIDs.count == 1 { json["eos_token_id"] = eosTokenIDs[0] }
    if eosTokenIDs.count > 1 { json["eos_token_id"] = eosTokenIDs }
    if isStudent {
      json["gate_soft_cap"] = shortestDouble(gateSoftCap)
      json["eps"] = shortestDouble(cellEps)
      json["chunk_size"] = chunkSize
      json["apply_rope"] = false
      if let gateInitialization { json["gate_initialization"] = gateInitialization }
    }
    return json
  }
}

/// Converts a Float to the Double whose decimal form is the Float's shortest one (1e-05, not 9.999999747378752e-06),
/// so configs read the way their authors wrote them.
func shortestDouble(_ value: Float) -> Double {
  Double("\(value)") ?? Double(value)
}
