import Foundation
import XLlama

enum EvalCommand: Command {
  static let name = "eval"
  static let summary = "Score perplexity and zero-shot tasks, with the student's recovery of a teacher."
  static let usage = "--model PATH (--tasks LIST | --text-file FILE) [--teacher PATH] [options]"
  static let defaultMaxContext = 2048
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(name: "--teacher", valueName: "PATH", help: "also evaluate this model and report the recovery of --model against it"),
    OptionSpec(
      name: "--tasks", valueName: "LIST",
      help: "comma-separated tasks, or all: " + EvaluationTask.allCases.filter { $0 != .text }.map(\.rawValue).joined(separator: ", ")),
    OptionSpec(
      name: "--text-file", valueName: "FILE",
      help: "also report the perplexity of this UTF-8 text file, scored whole (task 'text')"),
    OptionSpec(
      name: "--limit", valueName: "N",
      help: "score only the first N lines of each JSON Lines task file (WikiText-2 is one document and is never cut)"),
    OptionSpec(
      name: "--data-dir", valueName: "DIR", help: "folder with tasks/*.jsonl and eval/*.txt|jsonl",
      defaultDescription: "$XLLAMA_DATA, else ../shared/data"),
    OptionSpec(
      name: "--max-context", valueName: "N",
      help: "tokens of context per model call for both models, capped at a teacher's context limit; also the perplexity window",
      defaultDescription: "\(defaultMaxContext)"),
    OptionSpec(
      name: "--stride", valueName: "N", help: "new tokens scored per perplexity window",
      defaultDescription: "max context − 1, disjoint windows"),
    OptionSpec(name: "--batch", valueName: "N", help: "documents per model call of the choice tasks", defaultDescription: "16"),
    OptionSpec(name: "--output", valueName: "FILE", help: "write the results as JSON"),
    OptionSpec(name: "--samples", valueName: "FILE", help: "write per-document choice scores as JSON Lines"),
    OptionSpec(name: "--table", valueName: "FILE", help: "also write the Markdown table printed to stdout"),
    OptionSpec(
      name: "--on-malformed", valueName: "POLICY", help: "fail or skip on a task-file line that is not a valid document",
      defaultDescription: "fail"),
    threadsOption,
  ]

  static func run(_ options: ParsedOptions) throws {
    try applyThreads(options)
    let textFile = options.string("--text-file").map { URL(fileURLWithPath: $0) }
    var tasks = try EvaluationTask.parseList(options.string("--tasks") ?? "")
    if let textFile {
      guard FileManager.default.isReadableFile(atPath: textFile.path) else {
        throw CommandLineError.invalidValue(option: "--text-file", value: textFile.path, expected: "a readable UTF-8 text file")
      }
      if !tasks.contains(.text) { tasks.append(.text) }
    }
    guard !tasks.isEmpty else {
      throw CommandLineError.missingRequired(verb: name, option: "--tasks or --text-file")
    }
    let dataDirectory = try resolveDataDirectory(
      options.string("--data-dir"), tasks: tasks.filter { !($0 == .text && textFile != nil) })
    let policyText = options.string("--on-malformed") ?? "fail"
    guard let policy = MalformedLinePolicy(rawValue: policyText) else {
      throw CommandLineError.invalidValue(option: "--on-malformed", value: policyText, expected: "fail or skip")
    }
    let limit = try options.string("--limit").map { _ in try options.integer("--limit", default: 0, range: 1...Int.max) }
    let maxContext = try options.integer("--max-context", default: defaultMaxContext, range: 2...1_000_000)
    let stride = try options.string("--stride").map { _ in try options.integer("--stride", default: 0, range: 1...1_000_000) }
    let configuration = EvaluationConfiguration(
      dataDirectory: dataDirectory, tasks: tasks, limit: limit, malformedLinePolicy: policy,
      documentsPerBatch: try options.integer("--batch", default: 16, range: 1...100_000), windowLength: nil, stride: stride,
      textFile: textFile)

    var teacherRun: EvaluationRun? = nil
    if options.string("--teacher") != nil {
      teacherRun = try evaluate(options, option: "--teacher", role: "teacher", maxContext: maxContext, configuration: configuration)
    }
    let modelRun = try evaluate(options, option: "--model", role: "model", maxContext: maxContext, configuration: configuration)

    let table = EvaluationReport.markdownTable(teacher: teacherRun?.results, student: modelRun.results)
    writeStdout(table)
    if let path = options.string("--table") {
      try EvaluationReport.write(Data(table.utf8), to: URL(fileURLWithPath: path))
    }
    if let path = options.string("--output") {
      try EvaluationReport.write(try resultsJSON(model: modelRun.results, teacher: teacherRun?.results), to: URL(fileURLWithPath: path))
      stderrLine("wrote results to \(path)")
    }
    if let path = options.string("--samples") {
      var data = try labelledSamples(modelRun.samples, role: "model")
      if let teacherRun { data.append(try labelledSamples(teacherRun.samples, role: "teacher")) }
      try EvaluationReport.write(data, to: URL(fileURLWithPath: path))
      stderrLine("wrote \(modelRun.samples.count + (teacherRun?.samples.count ?? 0)) samples to \(path)")
    }
  }

  /// Loads the model of `option` and runs every task on it, with progress on stderr.
  static func evaluate(
    _ options: ParsedOptions, option: String, role: String, maxContext: Int, configuration: EvaluationConfiguration
  ) throws -> EvaluationRun {
    let loaded = try loadModel(options, option: option)
    let model = try LanguageModelEvaluation(loaded, maxContext: maxContext)
    let evaluator = Evaluator(
      model: model, modelName: URL(fileURLWithPath: loaded.path).lastPathComponent, configuration: configuration)
    let window = try evaluator.perplexityWindow()
    stderrLine(
      "evaluating \(role) with a maximum context of \(model.maxContext) tokens (perplexity windows of "
        + "\(window.windowLength), stride \(window.stride), document prefix token \(model.documentPrefixToken.map(String.init) ?? "none"))")
    let started = Date()
    let reporter = ProgressReporter(role: role)
    let run = try evaluator.run { reporter.report($0) }
    reporter.finish()
    stderrLine(String(format: "%@ finished in %.1f s", role, Date().timeIntervalSince(started)))
    return run
  }

  /// The data directory from the option, `XLLAMA_DATA`, or `../shared/data`, checked to hold the
  /// file of every requested task.
  static func resolveDataDirectory(_ option: String?, tasks: [EvaluationTask]) throws -> URL {
    if tasks.isEmpty && option == nil { return URL(fileURLWithPath: FileManager.default.currentDirectoryPath) }
    let path = option ?? ProcessInfo.processInfo.environment["XLLAMA_DATA"] ?? "../shared/data"
    let folder = URL(fileURLWithPath: path).standardized
    let layout = "expected a folder with tasks/<task>.jsonl for the choice tasks and eval/wikitext2_test.raw.txt, "
      + "eval/imdb_test_1000.jsonl for the perplexity tasks; set --data-dir or XLLAMA_DATA"
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
      throw CommandLineError.conflicting("data folder \(folder.path) not found; \(layout)")
    }
    let missing = tasks.map(\.relativePath).filter {
      !FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path)
    }
    guard missing.isEmpty else {
      throw CommandLineError.conflicting("data folder \(folder.path) lacks \(missing.joined(separator: ", ")); \(layout)")
    }
    return folder
  }

  /// `{"model": results, "teacher": results, "recovery": [...]}`, the last two only with a teacher.
  static func resultsJSON(model: EvaluationResults, teacher: EvaluationResults?) throws -> Data {
    var object: [String: Any] = ["model": try JSONSerialization.jsonObject(with: EvaluationReport.json(model))]
    if let teacher {
      object["teacher"] = try JSONSerialization.jsonObject(with: EvaluationReport.json(teacher))
      var recovery: [[String: Any]] = []
      for task in model.tasks {
        for metric in task.metrics {
          guard let teacherMetric = teacher.task(task.task)?.metric(metric.name),
            let ratio = EvaluationReport.recoveryRatio(teacher: teacherMetric, student: metric), ratio.isFinite
          else { continue }
          recovery.append(["task": task.task, "metric": metric.name, "recovery": ratio])
        }
      }
      object["recovery"] = recovery
    }
    return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
  }

  /// The samples as JSON Lines, each object with a `"model"` key of `role` added.
  static func labelledSamples(_ samples: [SampleRecord], role: String) throws -> Data {
    var data = Data()
    let lines = try EvaluationReport.samplesJSONLines(samples).split(separator: 0x0A)
    for line in lines {
      guard var object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { continue }
      object["model"] = role
      data.append(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
      data.append(0x0A)
    }
    return data
  }
}

/// Progress on stderr: one line rewritten in place on a terminal, else a line every 10 seconds
/// and at the end of each task.
final class ProgressReporter {
  let role: String
  let isTerminal = isatty(STDERR_FILENO) != 0
  private var lastPrinted = Date.distantPast
  private var pendingLine: String? = nil
  private var lineOpen = false

  init(role: String) { self.role = role }

  func report(_ progress: EvaluationProgress) {
    let line = "\(role) \(progress)"
    let now = Date()
    let taskDone = progress.done >= progress.total
    if isTerminal {
      guard taskDone || now.timeIntervalSince(lastPrinted) >= 0.2 else { return }
      FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (taskDone ? "\n" : "")).utf8))
      lineOpen = !taskDone
    } else {
      guard taskDone || now.timeIntervalSince(lastPrinted) >= 10 else {
        pendingLine = line
        return
      }
      stderrLine(line)
      pendingLine = nil
    }
    lastPrinted = now
  }

  /// Ends an open terminal line, or prints the last progress that the 10-second spacing held back.
  func finish() {
    if lineOpen { stderrLine("") }
    if let pendingLine { stderrLine(pendingLine) }
    lineOpen = false
    pendingLine = nil
  }
}
