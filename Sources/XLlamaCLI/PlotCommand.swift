import Foundation
import XLlama

enum PlotCommand: Command {
  static let name = "plot"
  static let summary = "Draw the loss curves of a distillation run's metrics.jsonl as an SVG file."
  static let usage = "--metrics FILE --out FILE.svg"
  static let options: [OptionSpec] = [
    OptionSpec(name: "--metrics", valueName: "FILE", help: "metrics.jsonl written by 'xllama distill'"),
    OptionSpec(name: "--out", valueName: "FILE", help: "SVG file to write"),
  ]

  static func run(_ options: ParsedOptions) throws {
    let metrics = URL(fileURLWithPath: try options.required("--metrics"))
    let out = URL(fileURLWithPath: try options.required("--out"))
    let records = try DistillationMetricsRecord.load(from: metrics)
    try AtomicFile.write(Data(LossPlot.svg(records: records).utf8), to: out)
    let stages = Set(records.map(\.stage)).sorted().map(String.init).joined(separator: ", ")
    stderrLine("plotted \(records.count) steps (stages \(stages.isEmpty ? "none" : stages)) to \(out.path)")
  }
}
