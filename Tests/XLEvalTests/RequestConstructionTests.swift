import Foundation
import Testing
@testable import XLEval

/// The Python fixture script's prompt rules, transcribed independently of `TaskLoader`:
/// (context per choice, continuation per choice, gold).
private func pythonRequests(_ task: EvaluationTask, _ doc: [String: Any]) -> ([String], [String], Int?) {
  func strings(_ key: String) -> [String] { doc[key] as! [String] }
  func string(_ key: String) -> String { doc[key] as! String }
  func int(_ key: String) -> Int { (doc[key] as! NSNumber).intValue }
  switch task {
  case .hellaswag:
    let endings = strings("endings").map { " " + $0 }
    return (Array(repeating: string("ctx"), count: endings.count), endings, int("label"))
  case .piqa:
    let context = "Question: \(string("goal"))\nAnswer:"
    return ([context, context], [" " + string("sol1"), " " + string("sol2")], int("label"))
  case .arcEasy, .arcChallenge:
    let choices = strings("choices").map { " " + $0 }
    return (Array(repeating: string("query") + "\nAnswer:", count: choices.count), choices, int("gold"))
  case .openbookQA:
    let choices = strings("choices").map { " " + $0 }
    return (Array(repeating: string("query"), count: choices.count), choices, int("gold"))
  case .boolq:
    let context = string("query") + "\nAnswer:"
    return ([context, context], [" no", " yes"], int("gold"))
  case .winogrande:
    let options = strings("context_options")
    return (options, Array(repeating: " " + string("continuation"), count: options.count), int("gold"))
  case .lambadaOpenAI:
    return ([string("context")], [" " + string("continuation")], nil)
  case .wikitext2, .imdb, .text:
    fatalError("not a choice task")
  }
}

@Suite("Request construction")
struct RequestConstructionTests {
  @Test("real task files match the Python prompts")
  func realTaskFiles() throws {
    let data = SharedFolders.data
    guard FileManager.default.fileExists(atPath: data.appendingPathComponent("tasks").path) else {
      print("note: \(data.path)/tasks is absent; skipping the real task file check")
      return
    }
    let choiceTasks = EvaluationTask.allCases.filter { !$0.isPerplexityTask }
    for task in choiceTasks {
      let model = CharacterModel()
      let configuration = EvaluationConfiguration(dataDirectory: data, tasks: [task], limit: 5, documentsPerBatch: 2)
      let run = try Evaluator(model: model, modelName: "fake", configuration: configuration).run()

      let text = try String(contentsOf: data.appendingPathComponent(task.relativePath), encoding: .utf8)
      let lines = text.split(separator: "\n").prefix(5)
      var expectedRequests: [LoglikelihoodRequest] = []
      var expectedGold: [Int?] = []
      for line in lines {
        let doc = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        let (contexts, continuations, gold) = pythonRequests(task, doc)
        for (context, continuation) in zip(contexts, continuations) {
          let contextIds = model.encode(context)
          let whole = model.encode(context + continuation)
          expectedRequests.append(
            LoglikelihoodRequest(contextTokens: contextIds, continuationTokens: Array(whole[contextIds.count...])))
        }
        expectedGold.append(gold)
      }
      #expect(model.allRequests == expectedRequests, "\(task.rawValue) requests")
      #expect(run.samples.map(\.gold) == expectedGold, "\(task.rawValue) gold labels")
      #expect(run.samples.map(\.doc) == Array(0..<lines.count), "\(task.rawValue) document indices")
      #expect(run.results.tasks.first?.documents == lines.count)
    }
  }

  @Test("requests of one batch share contexts")
  func batchesShareContexts() throws {
    let folder = try TemporaryDataDirectory()
    defer { folder.remove() }
    try folder.write("tasks/arc_easy.jsonl", """
      {"query": "Question: Q1", "choices": ["a", "b", "c"], "gold": 2}
      {"query": "Question: Q2", "choices": ["d", "e"], "gold": 0}

      """)
    let model = CharacterModel()
    let configuration = EvaluationConfiguration(dataDirectory: folder.url, tasks: [.arcEasy])
    _ = try Evaluator(model: model, modelName: "fake", configuration: configuration).run()
    #expect(model.requestBatches.count == 1)
    let groups = LoglikelihoodRequest.groupedByContext(model.allRequests)
    #expect(groups.map(\.requestIndices) == [[0, 1, 2], [3, 4]])
    #expect(groups.first?.contextTokens == model.encode("Question: Q1\nAnswer:"))
  }

  @Test("winogrande scores one continuation per option")
  func winograndePartialScoring() throws {
    let folder = try TemporaryDataDirectory()
    defer { folder.remove() }
    try folder.write("tasks/winogrande.jsonl", """
      {"context_options": ["Anna beat Bob so Anna", "Anna beat Bob so Bob"], "continuation": "was sad.", "gold": 1}

      """)
    let model = CharacterModel()
    let configuration = EvaluationConfiguration(dataDirectory: folder.url, tasks: [.winogrande])
    let run = try Evaluator(model: model, modelName: "fake", configuration: configuration).run()
    let requests = model.allRequests
    #expect(requests.count == 2)
    #expect(requests.map(\.contextTokens) == [model.encode("Anna beat Bob so Anna"), model.encode("Anna beat Bob so Bob")])
    #expect(requests.allSatisfy { $0.continuationTokens == model.encode(" was sad.") })

    let sample = try #require(run.samples.first)
    let expected = ["Anna beat Bob so Anna", "Anna beat Bob so Bob"].map { option in
      var previous = model.encode(option).last!
      var total = 0.0
      for token in model.encode(" was sad.") {
        total += CharacterModel.logprob(token, after: previous)
        previous = token
      }
      return total
    }
    #expect(expected[0] != expected[1])
    for choice in 0..<2 {
      #expect(abs(sample.loglikelihoods[choice] - expected[choice]) < 1e-12)
    }
    #expect(sample.normalizationLengths == [8, 8])
    #expect(run.results.tasks.first?.metrics.map(\.name) == ["acc"])
  }

  @Test("long contexts are cut on the left")
  func contextTruncation() throws {
    let pair = TokenizedPair(contextTokens: [1, 2, 3, 4, 5], continuationTokens: [6, 7], mergedAcrossJoin: false)
    let request = try #require(pair.request(maxContext: 4))
    #expect(request.contextTokens == [3, 4, 5])
    #expect(request.contextTokens.count + request.continuationTokens.count - 1 == 4)
    #expect(pair.request(maxContext: 1) == nil)
  }
}

@Suite("Join merging")
struct JoinMergeTests {
  @Test("plain join keeps the harness split")
  func plainJoin() throws {
    let encode = mergingEncoder(["xy"])
    let pair = try #require(tokenizePair(context: "ab", continuation: " cd", encode: encode))
    #expect(pair.contextTokens == encode("ab"))
    #expect(pair.continuationTokens == encode(" cd"))
    #expect(!pair.mergedAcrossJoin)
  }

  @Test("merged join scores the continuation text")
  func mergedJoin() throws {
    // "n " becomes one token, so whole[ctx.count...] would drop the continuation's space.
    let encode = mergingEncoder(["n "])
    let context = "pan"
    let continuation = " cake"
    let whole = encode(context + continuation)
    #expect(!whole.starts(with: encode(context)))

    let pair = try #require(tokenizePair(context: context, continuation: continuation, encode: encode))
    #expect(pair.mergedAcrossJoin)
    #expect(pair.contextTokens == encode(context))
    #expect(pair.continuationTokens == encode(continuation))
    #expect(pair.continuationTokens.count == 5)
  }

  @Test("merge that empties the harness split")
  func mergeLeavesNothing() throws {
    // "bc" merges, so encode("abc") has as many tokens as encode("ab") and the harness split is empty.
    let encode = mergingEncoder(["bc"])
    #expect(encode("abc").count == encode("ab").count)
    let pair = try #require(tokenizePair(context: "ab", continuation: "c", encode: encode))
    #expect(pair.continuationTokens == [Int(Character("c").unicodeScalars.first!.value)])
    #expect(pair.mergedAcrossJoin)
  }

  @Test("empty texts are rejected")
  func emptyTexts() {
    let encode = mergingEncoder([])
    #expect(tokenizePair(context: "", continuation: " a", encode: encode) == nil)
    #expect(tokenizePair(context: "a", continuation: "", encode: encode) == nil)
  }

  @Test("evaluator counts merged joins")
  func evaluatorCountsMerges() throws {
    struct MergingModel: EvaluationModel {
      let inner = CharacterModel()
      let encoder = mergingEncoder([": "])
      var maxContext: Int { 4096 }
      var documentPrefixToken: Int? { nil }
      func encode(_ text: String) -> [Int] { encoder(text) }
      func loglikelihoods(_ requests: [LoglikelihoodRequest]) throws -> [LoglikelihoodResult] {
        try inner.loglikelihoods(requests)
      }
      func tokenLogprobs(_ tokens: [Int]) throws -> [Double] { try inner.tokenLogprobs(tokens) }
    }
    let folder = try TemporaryDataDirectory()
    defer { folder.remove() }
    try folder.write("tasks/openbook_qa.jsonl", """
      {"query": "Answer:", "choices": ["yes", "no"], "gold": 0}

      """)
    let model = MergingModel()
    let run = try Evaluator(
      model: model, modelName: "fake", configuration: EvaluationConfiguration(dataDirectory: folder.url, tasks: [.openbookQA])
    ).run()
    #expect(run.results.tasks.first?.mergedJoins == 2)
    #expect(run.samples.first?.continuationTokens == [4, 3])
  }
}

@Suite("Plain text perplexity task")
struct TextTaskTests {
  @Test("text task reads the named file whole")
  func textFileIsOneDocument() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("xleval-text-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let file = folder.appendingPathComponent("book.txt")
    try "First line.\n\nSecond paragraph.\n".write(to: file, atomically: true, encoding: .utf8)
    let loader = TaskLoader(dataDirectory: URL(fileURLWithPath: "/nonexistent"), limit: 1, textFile: file)
    #expect(loader.url(of: .text) == file)
    let loaded = try loader.loadTextDocuments(.text)
    #expect(loaded.documents.count == 1)
    #expect(loaded.documents.first?.text == "First line.\n\nSecond paragraph.\n")
    #expect(try EvaluationTask.parseList("all").contains(.text) == false)
  }
}
