import Foundation

extension BPETokenizer {
  /// The tokenizer as a Hugging Face `tokenizer.json` (format of `tokenizers` 0.20 and later):
  /// a BPE model with the vocabulary and merges in rank order, special tokens as added tokens,
  /// and the pre-tokenizer this tokenizer applies (for `smollm`: numerics isolated one by one,
  /// then byte-level with the GPT-2 pattern). `BPETokenizer(tokenizerJSON:)` reads it back.
  public func tokenizerJSON() throws -> Data {
    var vocabulary: [String: Int] = [:]
    for (id, token) in tokens.enumerated() where vocabulary[token] == nil { vocabulary[token] = id }
    let ranked = merges.sorted { $0.value.rank < $1.value.rank }.map { entry -> [String] in
      [tokens[Int(entry.key >> 32)], tokens[Int(entry.key & 0xFFFF_FFFF)]]
    }
    let added: [[String: Any]] = specialTokenIDs.sorted().map { id in
      ["id": id, "content": tokens[id], "single_word": false, "lstrip": false, "rstrip": false,
       "normalized": false, "special": true]
    }
    let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
    let preTokenizerJSON: [String: Any]
    switch preTokenizer.kind {
    case .smollm:
      preTokenizerJSON = ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel]]
    case .gpt2:
      preTokenizerJSON = byteLevel
    }
    var model: [String: Any] = [
      "type": "BPE", "dropout": NSNull(), "continuing_subword_prefix": NSNull(),
      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
      "vocab": vocabulary, "merges": ranked,
    ]
    model["unk_token"] = unknownTokenID.map { tokens[$0] as Any } ?? NSNull()
    let json: [String: Any] = [
      "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
      "normalizer": NSNull(), "pre_tokenizer": preTokenizerJSON, "post_processor": NSNull(),
      "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
      "model": model,
    ]
    return try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes])
  }
}
