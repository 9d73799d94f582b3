import Foundation
import Testing
@testable import XLTokenizer

/// Folder of shared reference fixtures: `XLLAMA_FIXTURES`, else `../shared/reference/fixtures`
/// beside the package root.
func fixturesFolder() -> URL {
  if let path = ProcessInfo.processInfo.environment["XLLAMA_FIXTURES"], !path.isEmpty {
    return URL(fileURLWithPath: path)
  }
  return packageRoot().appendingPathComponent("../shared/reference/fixtures").standardized
}

/// Folder of shared data: `XLLAMA_DATA`, else `../shared/data` beside the package root.
func dataFolder() -> URL {
  if let path = ProcessInfo.processInfo.environment["XLLAMA_DATA"], !path.isEmpty {
    return URL(fileURLWithPath: path)
  }
  return packageRoot().appendingPathComponent("../shared/data").standardized
}

private func packageRoot() -> URL {
  URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
}

struct TokenizerFixture {
  struct Case {
    var text: String
    var ids: [Int]
    var decoded: String
  }
  struct WholeFile {
    var file: String
    var tokens: Int
    var firstIDs: [Int]
    var sha256: String
  }
  var cases: [Case]
  var files: [WholeFile]

  /// Reads `smollm2_tokenizer.json`, or returns nil (with a note) when it is absent.
  static func load() throws -> TokenizerFixture? {
    let url = fixturesFolder().appendingPathComponent("smollm2_tokenizer.json")
    guard FileManager.default.fileExists(atPath: url.path) else {
      print("note: skipped, fixture \(url.path) not found (set XLLAMA_FIXTURES)")
      return nil
    }
    let root = try #require(
      try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    let rawCases = try #require(root["cases"] as? [[String: Any]])
    let cases = try rawCases.map { entry in
      Case(
        text: try #require(entry["text"] as? String), ids: try #require(entry["ids"] as? [Int]),
        decoded: try #require(entry["decoded"] as? String))
    }
    let rawFiles = (root["files"] as? [[String: Any]]) ?? []
    let files = try rawFiles.map { entry in
      WholeFile(
        file: try #require(entry["file"] as? String), tokens: try #require(entry["tokens"] as? Int),
        firstIDs: (entry["first_ids"] as? [Int]) ?? [],
        sha256: try #require(entry["sha256_of_ids"] as? String))
    }
    return TokenizerFixture(cases: cases, files: files)
  }
}

private func loadTokenizerOrSkip() throws -> BPETokenizer? {
  guard let tokenizer = try loadSmolLM2Tokenizer() else {
    print("note: skipped, no SmolLM2 vocabulary (set XLLAMA_MODEL)")
    return nil
  }
  return tokenizer
}

@Suite("SmolLM2 tokenizer fixture")
struct SmolLM2FixtureTests {
  @Test("tricky texts encode id for id")
  func casesEncode() throws {
    guard let fixture = try TokenizerFixture.load(), let tokenizer = try loadTokenizerOrSkip() else {
      return
    }
    #expect(!fixture.cases.isEmpty)
    for item in fixture.cases {
      let ids = tokenizer.encode(item.text)
      #expect(ids == item.ids, "text \(item.text.debugDescription)")
    }
  }

  @Test("tricky texts decode back")
  func casesDecode() throws {
    guard let fixture = try TokenizerFixture.load(), let tokenizer = try loadTokenizerOrSkip() else {
      return
    }
    for item in fixture.cases {
      #expect(tokenizer.decode(item.ids) == item.decoded, "ids \(item.ids)")
    }
  }

  @Test("streaming decode matches decode")
  func streamingMatches() throws {
    guard let fixture = try TokenizerFixture.load(), let tokenizer = try loadTokenizerOrSkip() else {
      return
    }
    for item in fixture.cases {
      var decoder = tokenizer.streamingDecoder()
      var text = ""
      for id in item.ids {
        let chunk = decoder.append(id)
        #expect(!chunk.unicodeScalars.contains("\u{FFFD}"), "ids \(item.ids)")
        text += chunk
      }
      text += decoder.flush()
      #expect(text == item.decoded)
    }
  }

  @Test("heap merge matches scanning merge")
  func heapMatchesScanning() throws {
    guard let fixture = try TokenizerFixture.load(), let tokenizer = try loadTokenizerOrSkip() else {
      return
    }
    // Whole texts as single words, long enough to exercise many merges per word.
    var generator = SystemRandomNumberGenerator()
    let texts = fixture.cases.map(\.text) + (0..<50).map { _ in
      String((0..<Int.random(in: 33...400, using: &generator)).map { _ in
        "ab c\nthe ing 12½😸".randomElement(using: &generator)!
      })
    }
    for text in texts {
      let symbols = tokenizer.byteSymbols(Array(text.utf8))
      #expect(tokenizer.mergeWithHeap(symbols) == tokenizer.mergeByScanning(symbols), "text \(text.debugDescription)")
    }
  }

  @Test("special token ids")
  func specialTokens() throws {
    guard let tokenizer = try loadTokenizerOrSkip() else { return }
    let imEnd = try #require(tokenizer.id(for: "<|im_end|>"))
    #expect(tokenizer.eosTokenID == imEnd)
    #expect(tokenizer.specialTokenIDs.contains(imEnd))
    #expect(tokenizer.vocabularySize == 49152)
    #expect(tokenizer.token(for: imEnd) == "<|im_end|>")
  }

  @Test("whole files match count and sha256")
  func wholeFiles() throws {
    guard let fixture = try TokenizerFixture.load(), let tokenizer = try loadTokenizerOrSkip() else {
      return
    }
    for file in fixture.files {
      let url = dataFolder().appendingPathComponent("eval").appendingPathComponent(file.file)
      guard FileManager.default.fileExists(atPath: url.path) else {
        print("note: skipped \(file.file), not found at \(url.path) (set XLLAMA_DATA)")
        continue
      }
      let text = try String(contentsOf: url, encoding: .utf8)
      let start = Date()
      let ids = tokenizer.encode(text)
      let seconds = Date().timeIntervalSince(start)
      print("encoded \(file.file): \(text.utf8.count) bytes, \(ids.count) tokens in \(seconds) s")

      #expect(Array(ids.prefix(file.firstIDs.count)) == file.firstIDs)
      #expect(ids.count == file.tokens)
      let joined = ids.map(String.init).joined(separator: " ")
      let digest = sha256Hex(Array(joined.utf8))
      #expect(digest == file.sha256)
    }
  }
}
