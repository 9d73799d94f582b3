import Foundation
import Testing
@testable import XLTraining

#if canImport(FoundationXML)
import FoundationXML
#endif

/// Collects elements and attributes while checking that a document parses as XML.
final class ElementCollector: NSObject, XMLParserDelegate {
  var elements: [(name: String, attributes: [String: String])] = []
  func parser(
    _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
    attributes: [String: String] = [:]
  ) {
    elements.append((elementName, attributes))
  }
}

@Suite("Loss plot and inputs")
struct LossPlotTests {
  func records() -> [DistillationMetricsRecord] {
    var records: [DistillationMetricsRecord] = []
    for (stage, steps) in [(1, 20), (2, 30), (3, 50)] {
      for step in 1...steps {
        let loss = Float(stage) * 3 / Float(step) + (step == 7 && stage == 2 ? .nan : 0)
        records.append(DistillationMetricsRecord(
          stage: stage, step: step, loss: loss, lr: 1e-4, gradNorm: 1, tokens: step * 512, seconds: Double(step),
          valLoss: step % 10 == 0 ? loss * 1.1 : nil))
      }
    }
    return records
  }

  @Test("SVG is well-formed with one loss path per stage")
  func wellFormed() throws {
    let svg = LossPlot.svg(records: records())
    let parser = XMLParser(data: Data(svg.utf8))
    let collector = ElementCollector()
    parser.delegate = collector
    #expect(parser.parse(), "XML error: \(String(describing: parser.parserError))")
    #expect(collector.elements.first?.name == "svg")
    let paths = collector.elements.filter { $0.name == "path" && $0.attributes["class"] == "training" }
    #expect(paths.map { $0.attributes["id"] } == ["loss-stage1", "loss-stage2", "loss-stage3"])
    // The NaN at stage 2 step 7 breaks the line into two subpaths.
    let stage2 = try #require(paths[1].attributes["d"])
    #expect(stage2.filter { $0 == "M" }.count == 2)
    #expect(stage2.filter { $0 == "L" }.count == 27)
    let validation = collector.elements.filter { $0.name == "circle" && $0.attributes["class"] == "validation" }
    #expect(validation.count == 2 + 3 + 5)
    let texts = svg.components(separatedBy: "stage 2: hidden-state alignment").count - 1
    #expect(texts == 1)
  }

  @Test("SVG of no records still parses")
  func empty() {
    let parser = XMLParser(data: Data(LossPlot.svg(records: []).utf8))
    #expect(parser.parse())
  }

  @Test("ticks cover the range with round steps")
  func ticks() {
    let ticks = LossPlot.niceTicks(low: 0.37, high: 4.2)
    #expect(ticks.first! <= 0.37)
    #expect(ticks.last! >= 4.2)
    #expect(ticks == [0, 1, 2, 3, 4, 5])
    let small = LossPlot.niceTicks(low: 0.0012, high: 0.0049)
    #expect((3...8).contains(small.count))
    #expect(small.first! <= 0.0012)
    #expect(small.last! >= 0.0049)
  }

  @Test("input lists expand commas and folders")
  func inputs() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let corpus = folder.appendingPathComponent("corpus")
    try FileManager.default.createDirectory(at: corpus, withIntermediateDirectories: true)
    for name in ["b.jsonl", "a.txt", "notes.md", ".hidden.txt"] {
      try Data("x".utf8).write(to: corpus.appendingPathComponent(name))
    }
    let single = folder.appendingPathComponent("single.text")
    try Data("y".utf8).write(to: single)
    let urls = try InputFiles.expand(["\(single.path), \(corpus.path)", corpus.appendingPathComponent("a.txt").path])
    #expect(urls.map(\.lastPathComponent) == ["single.text", "a.txt", "b.jsonl"])
    #expect(throws: TrainingError.self) { try InputFiles.expand([folder.appendingPathComponent("missing.txt").path]) }
    let empty = folder.appendingPathComponent("empty")
    try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
    #expect(throws: TrainingError.self) { try InputFiles.expand([empty.path]) }
    #expect(throws: TrainingError.self) { try InputFiles.expand([" , "]) }
  }
}
