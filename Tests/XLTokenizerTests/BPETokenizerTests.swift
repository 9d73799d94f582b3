import Foundation
import Testing

@testable import XLTokenizer

/// Builds a tokenizer over a hand-made byte-level vocabulary: three special tokens, all 256
/// byte tokens, then the tokens produced by `merges` in order.
func makeTinyTokenizer(merges: [String]) throws -> BPETokenizer {
  var vocabulary = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
  vocabulary += (0..<256).map { ByteLevel.encode([UInt8($0)]) }
  for merge in merges {
    let parts = merge.split(separator: " ")
    let merged = parts.joined()
    if !vocabulary.contains(merged) { vocabulary.append(merged) }
  }
  var tokenTypes = [Int](repeating: 1, count: vocabulary.count)
  tokenTypes[0] = 3
  tokenTypes[1] = 3
  tokenTypes[2] = 3
  return try BPETokenizer(
    vocabulary: vocabulary, merges: merges, tokenTypes: tokenTypes, bosTokenID: 1, eosTokenID: 2,
    unknownTokenID: 0)
}

/// Byte-level spelling of raw bytes, for writing merges over non-ASCII text.
func byteLevel(_ bytes: [UInt8]) -> String {
  ByteLevel.encode(bytes)
}

@Suite("BPE tokenizer on a tiny vocabulary")
struct BPETokenizerTests {
  @Test("byte alphabet maps space and newline")
  func byteAlphabet() {
    #expect(byteLevel([0x20]) == "Ġ")
    #expect(byteLevel([0x0A]) == "Ċ")
    #expect(byteLevel([0x41]) == "A")
    #expect(Set((0..<256).map { byteLevel([UInt8($0)]) }).count == 256)
    #expect(ByteLevel.decode(byteLevel(Array(0...255))) == Array(0...255))
  }

  @Test("merges applied in rank order")
  func mergeOrder() throws {
    let leftFirst = try makeTinyTokenizer(merges: ["a b", "b c"])
    let rightFirst = try makeTinyTokenizer(merges: ["b c", "a b"])
    let ab = try #require(leftFirst.id(for: "ab"))
    let bc = try #require(rightFirst.id(for: "bc"))
    #expect(leftFirst.encode("abc") == [ab, try #require(leftFirst.id(for: "c"))])
    #expect(rightFirst.encode("abc") == [try #require(rightFirst.id(for: "a")), bc])
  }

  @Test("chained merges build a word")
  func chainedMerges() throws {
    let tokenizer = try makeTinyTokenizer(merges: ["l l", "h e", "he ll", "hell o", "Ġ w"])
    let hello = try #require(tokenizer.id(for: "hello"))
    let spaceW = try #require(tokenizer.id(for: "Ġw"))
    let o = try #require(tokenizer.id(for: "o"))
    #expect(tokenizer.encode("hello wo") == [hello, spaceW, o])
  }

  @Test("leftmost pair wins rank ties")
  func leftmostTie() throws {
    let tokenizer = try makeTinyTokenizer(merges: ["a a"])
    let aa = try #require(tokenizer.id(for: "aa"))
    let a = try #require(tokenizer.id(for: "a"))
    #expect(tokenizer.encode("aaa") == [aa, a])
  }

  @Test("heap merge matches scanning merge")
  func heapMatchesScanning() throws {
    let tokenizer = try makeTinyTokenizer(merges: ["a a", "b a", "aa aa", "ba a", "a b", "aaaa b"])
    for text in ["aaaaaaaaab", "babababaaaa", "abaabaaab" + String(repeating: "ab", count: 40), "a", ""] {
      let symbols = tokenizer.byteSymbols(Array(text.utf8))
      #expect(tokenizer.mergeWithHeap(symbols) == tokenizer.mergeByScanning(symbols), "text \(text)")
    }
    let long = String(repeating: "a", count: 1000)
    #expect(tokenizer.decode(tokenizer.encode(long)) == long)
  }

  @Test("special tokens matched in raw text")
  func specialTokens() throws {
    let tokenizer = try makeTinyTokenizer(merges: [])
    let x = try #require(tokenizer.id(for: "x"))
    let y = try #require(tokenizer.id(for: "y"))
    #expect(tokenizer.encode("x<|im_end|>y") == [x, 2, y])
    #expect(tokenizer.encode("<|im_start|><|im_end|>") == [1, 2])
    #expect(tokenizer.specialTokenIDs == [0, 1, 2])
    #expect(tokenizer.decode([1, x, 2]) == "<|im_start|>x<|im_end|>")
    // An incomplete special token is ordinary text.
    #expect(tokenizer.encode("<|im_end").count == 8)
  }

  @Test("decode round trip")
  func roundTrip() throws {
    let tokenizer = try makeTinyTokenizer(merges: ["l l", "h e", "Ġ w"])
    let texts = [
      "hello world", "tabs\tand\r\nCRLF", "日本語 😸 👍🏽", "  leading and trailing  ", "x² ½ Ⅷ", "",
      "e\u{301} combining",
    ]
    for text in texts {
      #expect(tokenizer.decode(tokenizer.encode(text)) == text, "text \(text.debugDescription)")
    }
  }

  @Test("ids and lookups")
  func lookups() throws {
    let tokenizer = try makeTinyTokenizer(merges: ["h e"])
    #expect(tokenizer.vocabularySize == 3 + 256 + 1)
    #expect(tokenizer.bosTokenID == 1)
    #expect(tokenizer.eosTokenID == 2)
    #expect(tokenizer.token(for: 2) == "<|im_end|>")
    #expect(tokenizer.token(for: -1) == nil)
    #expect(tokenizer.token(for: tokenizer.vocabularySize) == nil)
    #expect(tokenizer.id(for: "he") == tokenizer.vocabularySize - 1)
    #expect(tokenizer.id(for: "zz") == nil)
    #expect(tokenizer.decodeBytes([tokenizer.id(for: "Ġ")!]) == [0x20])
  }

  @Test("malformed merge names its index")
  func malformedMerge() {
    #expect(throws: TokenizerError.malformedMerge(index: 1, entry: "ab")) {
      _ = try makeTinyTokenizer(merges: ["a b", "ab"])
    }
    #expect(throws: TokenizerError.malformedMerge(index: 0, entry: "a ")) {
      _ = try BPETokenizer(
        vocabulary: ["a"], merges: ["a "], bosTokenID: nil, eosTokenID: nil, unknownTokenID: nil)
    }
  }

  @Test("merge over unknown token rejected")
  func mergeUnknownToken() {
    #expect(throws: TokenizerError.mergeTokenNotInVocabulary(index: 0, token: "q")) {
      _ = try BPETokenizer(
        vocabulary: ["a", "aq"], merges: ["a q"], bosTokenID: nil, eosTokenID: nil,
        unknownTokenID: nil)
    }
  }

  @Test("token type count mismatch rejected")
  func tokenTypeCount() {
    #expect(throws: TokenizerError.tokenTypeCountMismatch(vocabulary: 2, tokenTypes: 1)) {
      _ = try BPETokenizer(
        vocabulary: ["a", "b"], merges: [], tokenTypes: [1], bosTokenID: nil, eosTokenID: nil,
        unknownTokenID: nil)
    }
  }

  @Test("error messages name the problem")
  func errorMessages() {
    let error = TokenizerError.malformedMerge(index: 7, entry: "abc")
    #expect(error.description.contains("merge 7"))
    #expect(error.description.contains("\"abc\""))
  }
}

@Suite("Streaming decoder")
struct StreamingDecoderTests {
  /// Tokenizer whose merges glue F0 9F 98 (the first three bytes of 😸) into one token.
  func emojiTokenizer() throws -> BPETokenizer {
    try makeTinyTokenizer(merges: [
      "\(byteLevel([0xF0])) \(byteLevel([0x9F]))",
      "\(byteLevel([0xF0, 0x9F])) \(byteLevel([0x98]))",
    ])
  }

  @Test("emoji split across tokens")
  func emojiSplit() throws {
    let tokenizer = try emojiTokenizer()
    let ids = tokenizer.encode("😸")
    let head = try #require(tokenizer.id(for: byteLevel([0xF0, 0x9F, 0x98])))
    let tail = try #require(tokenizer.id(for: byteLevel([0xB8])))
    #expect(ids == [head, tail])

    var decoder = tokenizer.streamingDecoder()
    #expect(decoder.append(head) == "")
    #expect(decoder.append(tail) == "😸")
    #expect(decoder.flush() == "")
  }

  @Test("text around emoji streams")
  func mixedText() throws {
    let tokenizer = try emojiTokenizer()
    let text = "cat 😸😸 ok"
    var decoder = tokenizer.streamingDecoder()
    var output = ""
    for id in tokenizer.encode(text) {
      let chunk = decoder.append(id)
      #expect(!chunk.unicodeScalars.contains("\u{FFFD}"))
      output += chunk
    }
    output += decoder.flush()
    #expect(output == text)
  }

  @Test("flush returns unfinished tail")
  func flushUnfinished() throws {
    let tokenizer = try emojiTokenizer()
    let head = try #require(tokenizer.id(for: byteLevel([0xF0, 0x9F, 0x98])))
    var decoder = tokenizer.streamingDecoder()
    #expect(decoder.append(head) == "")
    #expect(decoder.flush() == "\u{FFFD}")
  }

  @Test("stray continuation byte not held")
  func strayByte() throws {
    let tokenizer = try emojiTokenizer()
    let tail = try #require(tokenizer.id(for: byteLevel([0xB8])))
    var decoder = tokenizer.streamingDecoder()
    #expect(decoder.append(tail) == "\u{FFFD}")
  }
}

@Suite("tokenizer.json loading")
struct TokenizerJSONTests {
  func writeFolder(tokenizer: String, config: String?) throws -> URL {
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("xltokenizer-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try tokenizer.write(to: folder.appendingPathComponent("tokenizer.json"), atomically: true, encoding: .utf8)
    if let config {
      try config.write(
        to: folder.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
    }
    return folder
  }

  @Test("pair merges and config names")
  func pairMerges() throws {
    let json = """
      {"added_tokens": [{"id": 3, "content": "<|im_end|>", "special": true}],
       "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                 "merges": [["a", "b"]]}}
      """
    let config = #"{"bos_token": null, "eos_token": {"content": "<|im_end|>"}}"#
    let folder = try writeFolder(tokenizer: json, config: config)
    defer { try? FileManager.default.removeItem(at: folder) }

    let tokenizer = try BPETokenizer(tokenizerJSON: folder.appendingPathComponent("tokenizer.json"))
    #expect(tokenizer.vocabularySize == 4)
    #expect(tokenizer.eosTokenID == 3)
    #expect(tokenizer.bosTokenID == nil)
    #expect(tokenizer.specialTokenIDs == [3])
    #expect(tokenizer.encode("ab<|im_end|>") == [2, 3])
  }

  @Test("missing vocab key reported")
  func missingVocab() throws {
    let folder = try writeFolder(tokenizer: #"{"model": {"merges": []}}"#, config: nil)
    defer { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent("tokenizer.json")
    #expect(
      throws: TokenizerError.missingKey(key: "model.vocab", expected: "an object of token ids", path: url.path)
    ) {
      _ = try BPETokenizer(tokenizerJSON: url)
    }
  }

  @Test("malformed pair merge reported")
  func malformedPair() throws {
    let json = #"{"model": {"vocab": {"a": 0}, "merges": ["a a", ["a"]]}}"#
    let folder = try writeFolder(tokenizer: json, config: nil)
    defer { try? FileManager.default.removeItem(at: folder) }
    do {
      _ = try BPETokenizer(tokenizerJSON: folder.appendingPathComponent("tokenizer.json"))
      Issue.record("expected an error")
    } catch let error as TokenizerError {
      guard case .malformedMerge(let index, _) = error else {
        Issue.record("unexpected error \(error)")
        return
      }
      #expect(index == 1)
    }
  }
}
