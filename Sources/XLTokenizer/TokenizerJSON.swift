import Foundation

extension BPETokenizer {
  /// Loads a Hugging Face `tokenizer.json` (BPE model) and, when present beside it,
  /// `tokenizer_config.json` for the BOS and EOS token names.
  ///
  /// Reads `model.vocab` (token → id), `model.merges` as "left right" strings or
  /// `[left, right]` pairs, and `added_tokens` (all matched before BPE). Holes in the id range
  /// become empty token strings that nothing encodes to. The pre-tokenizer is always `smollm`.
  /// NOTE: `lstrip`, `rstrip` and `single_word` of added tokens are ignored, and the
  /// pre-tokenizer section of the file is not checked against `smollm`.
  public convenience init(tokenizerJSON url: URL) throws {
    let root = try Self.readJSONObject(url)
    let path = url.path
    guard let model = root["model"] as? [String: Any] else {
      throw TokenizerError.missingKey(key: "model", expected: "an object", path: path)
    }
    guard let vocab = model["vocab"] as? [String: Any] else {
      throw TokenizerError.missingKey(key: "model.vocab", expected: "an object of token ids", path: path)
    }
    guard let rawMerges = model["merges"] as? [Any] else {
      throw TokenizerError.missingKey(key: "model.merges", expected: "an array", path: path)
    }

    var idsByToken: [(String, Int)] = []
    for (token, value) in vocab {
      guard let id = value as? Int, id >= 0 else {
        throw TokenizerError.missingKey(
          key: "model.vocab[\(token.debugDescription)]", expected: "a non-negative integer id", path: path)
      }
      idsByToken.append((token, id))
    }
    var specialIDs: [Int: Bool] = [:]
    for (index, entry) in ((root["added_tokens"] as? [Any]) ?? []).enumerated() {
      guard let object = entry as? [String: Any], let id = object["id"] as? Int, id >= 0,
        let content = object["content"] as? String
      else {
        throw TokenizerError.missingKey(
          key: "added_tokens[\(index)]", expected: "an object with integer 'id' and string 'content'",
          path: path)
      }
      idsByToken.append((content, id))
      specialIDs[id] = (object["special"] as? Bool) ?? false
    }

    let size = (idsByToken.map(\.1).max() ?? -1) + 1
    var vocabulary = [String](repeating: "", count: size)
    for (token, id) in idsByToken {
      vocabulary[id] = token
    }
    var tokenTypes = [Int](repeating: 1, count: size)
    for (id, special) in specialIDs {
      tokenTypes[id] = special ? 3 : 4
    }

    var merges: [String] = []
    merges.reserveCapacity(rawMerges.count)
    for (index, entry) in rawMerges.enumerated() {
      if let line = entry as? String {
        merges.append(line)
      } else if let pair = entry as? [Any], pair.count == 2, let left = pair[0] as? String,
        let right = pair[1] as? String
      {
        merges.append(left + " " + right)
      } else {
        throw TokenizerError.malformedMerge(index: index, entry: String(describing: entry))
      }
    }

    let configURL = url.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
    var bosID: Int?
    var eosID: Int?
    var unknownID: Int?
    if FileManager.default.fileExists(atPath: configURL.path) {
      let config = try Self.readJSONObject(configURL)
      let ids = Dictionary(idsByToken, uniquingKeysWith: { first, _ in first })
      bosID = Self.tokenName(config["bos_token"]).flatMap { ids[$0] }
      eosID = Self.tokenName(config["eos_token"]).flatMap { ids[$0] }
      unknownID = Self.tokenName(config["unk_token"]).flatMap { ids[$0] }
    }
    if unknownID == nil, let name = model["unk_token"] as? String {
      unknownID = idsByToken.first { $0.0 == name }?.1
    }

    try self.init(
      vocabulary: vocabulary, merges: merges, tokenTypes: tokenTypes, bosTokenID: bosID,
      eosTokenID: eosID, unknownTokenID: unknownID, preTokenizer: "smollm")
  }

  /// Token name from a config value that is either a string or `{"content": string}`.
  static func tokenName(_ value: Any?) -> String? {
    if let name = value as? String { return name }
    if let object = value as? [String: Any] { return object["content"] as? String }
    return nil
  }

  static func readJSONObject(_ url: URL) throws -> [String: Any] {
    let data: Data
    do {
      data = try Data(contentsOf: url, options: .mappedIfSafe)
    } catch {
      throw TokenizerError.unreadableFile(path: url.path, reason: error.localizedDescription)
    }
    let parsed: Any
    do {
      parsed = try JSONSerialization.jsonObject(with: data)
    } catch {
      throw TokenizerError.unreadableFile(path: url.path, reason: "invalid JSON: \(error.localizedDescription)")
    }
    guard let object = parsed as? [String: Any] else {
      throw TokenizerError.unreadableFile(path: url.path, reason: "top level is not a JSON object")
    }
    return object
  }
}
