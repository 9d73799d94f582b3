import Foundation

/// Writers for the results JSON, the samples JSON Lines file and the comparison table.
public enum EvaluationReport {
  /// Encodes the results as pretty-printed JSON with sorted keys; a missing standard error is `null`.
  public static func json(_ results: EvaluationResults) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return try encoder.encode(results)
  }

  /// Encodes one JSON object per sample and line, in evaluation order.
  public static func samplesJSONLines(_ samples: [SampleRecord]) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    var data = Data()
    for sample in samples {
      data.append(try encoder.encode(sample))
      data.append(0x0A)
    }
    return data
  }

  /// Writes `data` to `url`, creating the parent folder.
  public static func write(_ data: Data, to url: URL) throws {
    do {
      try FileManager.default.createDirectory(
        at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
      try data.write(to: url, options: .atomic)
    } catch {
      throw EvaluationError.writeFailed(path: url.path, reason: error.localizedDescription)
    }
  }

  /// Renders a Markdown table of every metric: task | metric | teacher | student | recovery.
  ///
  /// Values are shown as value ± standard error. Recovery is student ÷ teacher for metrics where
  /// higher is better and teacher ÷ student for perplexities and bits per byte, so above 1 means
  /// the student does better either way. Rows follow the student's tasks; a side without the
  /// metric, or without a teacher at all, shows "–". Skipped lines are listed under the table.
  public static func markdownTable(teacher: EvaluationResults?, student: EvaluationResults) -> String {
    var lines = [
      "| task | metric | teacher | student | recovery |",
      "|---|---|---:|---:|---:|",
    ]
    for studentTask in student.tasks {
      let teacherTask = teacher?.task(studentTask.task)
      for metric in studentTask.metrics {
        let teacherMetric = teacherTask?.metric(metric.name)
        let recovery = teacherMetric.flatMap { recoveryRatio(teacher: $0, student: metric) }
        lines.append(
          "| \(studentTask.task) | \(metric.name) | \(teacherMetric.map(format) ?? "–") | "
            + "\(format(metric)) | \(recovery.map { String(format: "%.3f", $0) } ?? "–") |")
      }
    }
    lines.append("")
    lines.append(
      "Recovery is student ÷ teacher for accuracies and teacher ÷ student for perplexities and "
        + "bits per byte, so higher is better for every row. ± gives one standard error.")
    for (name, results) in [("teacher", teacher), ("student", student)] {
      for task in results?.tasks ?? [] where !task.skippedLines.isEmpty {
        lines.append("")
        lines.append("\(name) \(task.task): \(task.skippedLines.count) malformed lines skipped")
      }
    }
    return lines.joined(separator: "\n") + "\n"
  }

  /// Student ÷ teacher when higher is better, teacher ÷ student otherwise; nil when the divisor
  /// is zero.
  public static func recoveryRatio(teacher: MetricValue, student: MetricValue) -> Double? {
    let (numerator, denominator) =
      student.higherIsBetter ? (student.value, teacher.value) : (teacher.value, student.value)
    return denominator == 0 ? nil : numerator / denominator
  }

  private static func format(_ metric: MetricValue) -> String {
    let digits = metric.higherIsBetter ? "%.4f" : "%.3f"
    let value = String(format: digits, metric.value)
    guard let error = metric.standardError else { return value }
    return value + " ± " + String(format: digits, error)
  }
}
