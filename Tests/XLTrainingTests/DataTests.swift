import Foundation
import Testing
import XLTensors
@testable import XLTraining

/// Creates a fresh temporary folder. The caller removes it with `defer`.
func makeTemporaryFolder() throws -> URL {
  let url = FileManager.default.temporaryDirectory
    .appendingPathComponent("xltraining-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// Writes a shard holding `ids` and opens it.
func makeShard(_ ids: [Int], vocabSize: Int, in folder: URL, name: String) throws -> TokenShardReader {
  let url = folder.appendingPathComponent(name)
  let writer = try TokenShardWriter(url: url, vocabSize: vocabSize)
  try writer.append(ids)
  try writer.finish()
  return try TokenShardReader(url: url)
}

/// Byte-level stand-in tokenizer: one id per UTF-8 byte.
func byteTokenizer(_ text: String) -> [Int] { text.utf8.map(Int.init) }

@Suite("Token shards")
struct TokenShardTests {
  @Test("uint16 round trip and header")
  func roundTrip16() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let ids = [0, 1, 65535, 300, 49151]
    let shard = try makeShard(ids, vocabSize: 65536, in: folder, name: "a.bin")
    #expect(shard.count == 5)
    #expect(shard.bytesPerId == 2)
    #expect(shard.ids(0..<5) == ids)
    let bytes = [UInt8](try Data(contentsOf: shard.url))
    #expect(bytes.count == 24 + 10)
    #expect(Array(bytes[0..<4]) == Array("XLTK".utf8))
    #expect(Array(bytes[24..<28]) == [0, 0, 1, 0])
  }

  @Test("uint32 for large vocabularies")
  func roundTrip32() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let shard = try makeShard([70000, 3, 65536], vocabSize: 70001, in: folder, name: "b.bin")
    #expect(shard.bytesPerId == 4)
    #expect(shard.ids(0..<3) == [70000, 3, 65536])
  }

  @Test("out-of-range id rejected")
  func outOfRange() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let writer = try TokenShardWriter(url: folder.appendingPathComponent("c.bin"), vocabSize: 10)
    #expect(throws: TrainingError.tokenOutOfRange(id: 10, vocabSize: 10, path: "doc")) {
      try writer.append([3, 10], source: "doc")
    }
  }

  @Test("corrupt shards rejected")
  func corrupt() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let good = try makeShard([1, 2, 3], vocabSize: 100, in: folder, name: "good.bin")
    let bytes = [UInt8](try Data(contentsOf: good.url))

    var cases: [(String, [UInt8])] = []
    cases.append(("short", Array(bytes[0..<10])))
    var badMagic = bytes; badMagic[0] = 0x41
    cases.append(("magic", badMagic))
    var badVersion = bytes; badVersion[4] = 9
    cases.append(("version", badVersion))
    var badWidth = bytes; badWidth[8] = 3
    cases.append(("width", badWidth))
    cases.append(("truncated", Array(bytes.dropLast())))
    var hugeCount = bytes; hugeCount[23] = 0xFF
    cases.append(("count", hugeCount))

    for (name, contents) in cases {
      let url = folder.appendingPathComponent("\(name).bin")
      try Data(contents).write(to: url)
      #expect(throws: TrainingError.self, "case \(name)") { try TokenShardReader(url: url) }
    }
  }
}

@Suite("Data preparation")
struct DataPreparerTests {
  @Test("txt and jsonl into shards")
  func prepare() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let text = folder.appendingPathComponent("a.txt")
    try "ab".write(to: text, atomically: true, encoding: .utf8)
    let jsonl = folder.appendingPathComponent("b.jsonl")
    try "{\"text\": \"cd\"}\n\n{\"text\": \"e\", \"id\": 3}\r\n".write(to: jsonl, atomically: true, encoding: .utf8)

    var options = DataPreparationOptions()
    options.validationFraction = 0
    let preparer = DataPreparer(vocabSize: 300, eosId: 256, options: options, tokenize: byteTokenizer)
    let output = folder.appendingPathComponent("out")
    let manifest = try preparer.prepare(inputs: [text, jsonl], outputDirectory: output)

    #expect(manifest.train.count == 1)
    #expect(manifest.trainTokens == 8)
    #expect(manifest.inputs.map(\.documents) == [1, 2])
    #expect(manifest.dtype == "uint16")
    let shard = try TokenShardReader(url: output.appendingPathComponent(manifest.train[0].file))
    #expect(shard.ids(0..<8) == [97, 98, 256, 99, 100, 256, 101, 256])
    #expect(try DataManifest.load(from: output) == manifest)
    let json = try String(contentsOf: output.appendingPathComponent("manifest.json"), encoding: .utf8)
    #expect(json.contains("\"eos_id\" : 256"))
  }

  @Test("Latin-1 lines rejected or decoded")
  func latin1Lines() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let text = folder.appendingPathComponent("latin1.txt")
    // "caf\u{E9}" in UTF-8 on line 1, then "Bruneti\u{E8}re" in Latin-1 on line 2.
    try Data([0x63, 0x61, 0x66, 0xC3, 0xA9, 0x0A, 0x42, 0x72, 0x75, 0x6E, 0x65, 0x74, 0x69, 0xE8, 0x72, 0x65])
      .write(to: text)
    var options = DataPreparationOptions()
    options.validationFraction = 0
    let strict = DataPreparer(vocabSize: 300, eosId: 256, options: options, tokenize: byteTokenizer)
    do {
      _ = try strict.prepare(inputs: [text], outputDirectory: folder.appendingPathComponent("strict"))
      Issue.record("invalid UTF-8 was accepted")
    } catch let error as TrainingError {
      #expect(error.description.contains("latin1.txt:2"))
      #expect(error.description.contains("--latin1"))
    }

    options.decodeInvalidUTF8AsLatin1 = true
    var decoded: [String] = []
    let lenient = DataPreparer(vocabSize: 300, eosId: 256, options: options) { text in
      decoded.append(text)
      return Array(text.utf8).map(Int.init)
    }
    _ = try lenient.prepare(inputs: [text], outputDirectory: folder.appendingPathComponent("lenient"))
    #expect(decoded == ["caf\u{E9}\nBruneti\u{E8}re"])
  }

  @Test("malformed jsonl line reported")
  func malformed() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let jsonl = folder.appendingPathComponent("bad.jsonl")
    try "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n".write(to: jsonl, atomically: true, encoding: .utf8)
    let preparer = DataPreparer(vocabSize: 300, eosId: 256, tokenize: byteTokenizer)
    do {
      _ = try preparer.prepare(inputs: [jsonl], outputDirectory: folder.appendingPathComponent("out"))
      Issue.record("expected an error for line 2")
    } catch let error as TrainingError {
      #expect(error == .malformedJSONLine(path: jsonl.path, line: 2, reason: "field 'text' is missing"))
      #expect(error.description.hasPrefix("\(jsonl.path):2:"))
    }

    try "{\"text\": \"ok\"}\nnot json\n".write(to: jsonl, atomically: true, encoding: .utf8)
    #expect {
      _ = try preparer.prepare(inputs: [jsonl], outputDirectory: folder.appendingPathComponent("out"))
    } throws: { error in
      guard case .malformedJSONLine(_, let line, _)? = error as? TrainingError else { return false }
      return line == 2
    }
  }

  @Test("paragraph split, shard bound, validation split")
  func paragraphsAndSplit() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let text = folder.appendingPathComponent("p.txt")
    let paragraphs = (0..<200).map { "paragraph \($0)\nsecond line" }
    try paragraphs.joined(separator: "\n\n\n").write(to: text, atomically: true, encoding: .utf8)

    var options = DataPreparationOptions()
    options.textSplit = .paragraphs
    options.validationFraction = 0.25
    options.seed = 7
    options.maxTokensPerShard = 500
    let preparer = DataPreparer(vocabSize: 300, eosId: 256, options: options, tokenize: byteTokenizer)
    let first = try preparer.prepare(inputs: [text], outputDirectory: folder.appendingPathComponent("one"))
    let second = try preparer.prepare(inputs: [text], outputDirectory: folder.appendingPathComponent("two"))

    #expect(first.inputs[0].documents == 200)
    #expect(first.train == second.train, "same seed, same split")
    #expect(first.train.allSatisfy { $0.tokens <= 500 })
    #expect(first.train.count > 1)
    let validationDocuments = first.validation.reduce(0) { $0 + $1.documents }
    #expect(validationDocuments > 25, "about 25% of 200 documents")
    #expect(validationDocuments < 75, "about 25% of 200 documents")
    let expectedTokens = paragraphs.reduce(0) { $0 + $1.utf8.count + 1 }
    #expect(first.trainTokens + first.validationTokens == expectedTokens)
  }
}

@Suite("Batcher")
struct BatcherTests {
  func makeShards(_ folder: URL) throws -> [TokenShardReader] {
    [
      try makeShard(Array(0..<41), vocabSize: 1000, in: folder, name: "s0.bin"),
      try makeShard(Array(100..<123), vocabSize: 1000, in: folder, name: "s1.bin"),
      try makeShard(Array(500..<504), vocabSize: 1000, in: folder, name: "s2.bin"),
    ]
  }

  @Test("targets shift inputs by one")
  func shift() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let batcher = try Batcher(shards: try makeShards(folder), contextLength: 5, batchSize: 2, seed: 1)
    // (41 − 1) / 5 = 8 windows in shard 0, (23 − 1) / 5 = 4 in shard 1, none in shard 2.
    #expect(batcher.windowsPerEpoch == 12)
    let batch = batcher.nextBatch()
    for row in 0..<2 {
      for t in 0..<4 { #expect(batch.targets[row * 5 + t] == batch.inputs[row * 5 + t + 1]) }
      #expect(batch.targets[row * 5 + 4] == batch.inputs[row * 5 + 4] + 1)
    }
  }

  @Test("epoch covers every window once")
  func epochCoverage() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let batcher = try Batcher(shards: try makeShards(folder), contextLength: 5, batchSize: 3, seed: 9)
    var firstIds: [Int32] = []
    for _ in 0..<4 {
      let batch = batcher.nextBatch()
      #expect(batch.epoch == 0)
      for row in 0..<3 { firstIds.append(batch.inputs[row * 5]) }
    }
    #expect(Set(firstIds) == [0, 5, 10, 15, 20, 25, 30, 35, 100, 105, 110, 115])
    #expect(firstIds != firstIds.sorted(), "order is shuffled")
    #expect(batcher.nextBatch().epoch == 1)
  }

  @Test("same seed same batches, resumable")
  func resume() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let shards = try makeShards(folder)
    let a = try Batcher(shards: shards, contextLength: 4, batchSize: 5, seed: 42)
    let b = try Batcher(shards: shards, contextLength: 4, batchSize: 5, seed: 42)
    let c = try Batcher(shards: shards, contextLength: 4, batchSize: 5, seed: 43)
    let batchesA = (0..<7).map { _ in a.nextBatch() }
    var batchesB: [TokenBatch] = []
    for _ in 0..<3 { batchesB.append(b.nextBatch()) }
    #expect(batchesA.prefix(3).elementsEqual(batchesB))
    #expect(c.nextBatch() != batchesA[0])

    let saved = try JSONEncoder().encode(b.position)
    let position = try JSONDecoder().decode(BatcherPosition.self, from: saved)
    let resumed = try Batcher(shards: shards, contextLength: 4, batchSize: 5, seed: 42, position: position)
    for index in 3..<7 { #expect(resumed.nextBatch() == batchesA[index], "batch \(index)") }
  }

  @Test("too little data rejected")
  func notEnough() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let shard = try makeShard([1, 2, 3], vocabSize: 10, in: folder, name: "tiny.bin")
    #expect(throws: TrainingError.notEnoughTokens(available: 3, required: 4)) {
      try Batcher(shards: [shard], contextLength: 3, batchSize: 1, seed: 0)
    }
  }

  @Test("SplitMix64 reference outputs")
  func splitMix() {
    // Published first outputs of SplitMix64 seeded with 0 (Vigna's reference splitmix64.c).
    var generator = SplitMix64(seed: 0)
    #expect(generator.next() == 0xE220_A839_7B1D_CDAF)
    #expect(generator.next() == 0x6E78_9E6A_A1B9_65F4)
    var bounded = SplitMix64(seed: 5)
    for _ in 0..<1000 { #expect((0..<7).contains(bounded.nextIndex(below: 7))) }
  }
}
