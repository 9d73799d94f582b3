import Foundation

/// Draws loss curves from metrics records as a standalone SVG document.
///
/// Each stage gets a panel with its own axes, because stages measure different losses. Panels
/// are stacked top to bottom in the order the stages first appear. In each, x is the step
/// within the stage and y the loss on a linear scale with round-number ticks. The training loss is a path with id
/// `loss-stageK`; validation losses are circles of class `validation`. Non-finite losses
/// break the line and are left out of the axis range.
public enum LossPlot {
  static let width = 760.0
  static let panelHeight = 240.0
  static let margin = (left: 78.0, right: 24.0, top: 34.0, bottom: 46.0)

  public static func svg(records: [DistillationMetricsRecord]) -> String {
    var stages: [Int] = []
    for record in records where !stages.contains(record.stage) { stages.append(record.stage) }
    let height = panelHeight * Double(max(1, stages.count))
    var out = """
      <?xml version="1.0" encoding="UTF-8"?>
      <svg xmlns="http://www.w3.org/2000/svg" width="\(format(width))" height="\(format(height))" \
      viewBox="0 0 \(format(width)) \(format(height))" font-family="sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>

      """
    if stages.isEmpty {
      out += "<text x=\"\(format(width / 2))\" y=\"\(format(height / 2))\" text-anchor=\"middle\">no metrics yet</text>\n"
    }
    for (index, stage) in stages.enumerated() {
      let stageRecords = records.filter { $0.stage == stage }
      out += panel(stage: stage, records: stageRecords, top: Double(index) * panelHeight)
    }
    out += "</svg>\n"
    return out
  }

  private static func panel(stage: Int, records: [DistillationMetricsRecord], top: Double) -> String {
    let left = margin.left, right = width - margin.right
    let plotTop = top + margin.top, plotBottom = top + panelHeight - margin.bottom
    let steps = records.map(\.step)
    let xTicks = niceTicks(low: 0, high: Double(max(1, steps.max() ?? 1)))
    let values = (records.map(\.loss) + records.compactMap(\.valLoss)).filter(\.isFinite).map(Double.init)
    var low = values.min() ?? 0, high = values.max() ?? 1
    if high - low < 1e-12 { low -= 0.5 * max(abs(low), 1e-3); high += 0.5 * max(abs(high), 1e-3) }
    let yTicks = niceTicks(low: low, high: high)
    let xRange = (xTicks.first!, xTicks.last!), yRange = (yTicks.first!, yTicks.last!)
    func x(_ step: Double) -> Double { left + (step - xRange.0) / (xRange.1 - xRange.0) * (right - left) }
    func y(_ loss: Double) -> Double { plotBottom - (loss - yRange.0) / (yRange.1 - yRange.0) * (plotBottom - plotTop) }

    let name = MOHAWKStage(rawValue: stage).map { "stage \(stage): \($0.title)" } ?? "stage \(stage)"
    var out = "<g class=\"stage\" id=\"stage\(stage)\">\n"
    out += "<text x=\"\(format(left))\" y=\"\(format(top + 20))\" font-size=\"14\" font-weight=\"bold\">\(escape(name))</text>\n"
    // Axes and grid.
    out += "<path d=\"M\(format(left)) \(format(plotTop))V\(format(plotBottom))H\(format(right))\" stroke=\"black\" fill=\"none\"/>\n"
    for tick in xTicks {
      let px = format(x(tick))
      out += "<line x1=\"\(px)\" y1=\"\(format(plotBottom))\" x2=\"\(px)\" y2=\"\(format(plotBottom + 5))\" stroke=\"black\"/>"
      out += "<text x=\"\(px)\" y=\"\(format(plotBottom + 18))\" text-anchor=\"middle\">\(label(tick))</text>\n"
    }
    for tick in yTicks {
      let py = format(y(tick))
      out += "<line x1=\"\(format(left - 5))\" y1=\"\(py)\" x2=\"\(format(right))\" y2=\"\(py)\" stroke=\"#dddddd\"/>"
      out += "<text x=\"\(format(left - 8))\" y=\"\(format(y(tick) + 4))\" text-anchor=\"end\">\(label(tick))</text>\n"
    }
    out += "<text x=\"\(format((left + right) / 2))\" y=\"\(format(plotBottom + 36))\" text-anchor=\"middle\">step</text>\n"
    let middle = format((plotTop + plotBottom) / 2)
    out += "<text x=\"\(format(18))\" y=\"\(middle)\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(middle))\">loss</text>\n"

    // Training loss, a new subpath after every non-finite gap.
    var d = ""
    var drawing = false
    for record in records {
      guard record.loss.isFinite else { drawing = false; continue }
      d += (drawing ? "L" : "M") + "\(format(x(Double(record.step)))) \(format(y(Double(record.loss))))"
      drawing = true
    }
    out += "<path id=\"loss-stage\(stage)\" class=\"training\" d=\"\(d)\" stroke=\"#1f77b4\" stroke-width=\"1.5\" fill=\"none\"/>\n"
    for record in records {
      guard let value = record.valLoss, value.isFinite else { continue }
      out += "<circle class=\"validation\" cx=\"\(format(x(Double(record.step))))\" cy=\"\(format(y(Double(value))))\" "
        + "r=\"3.5\" fill=\"#d62728\"/>\n"
    }
    // Legend.
    let legendX = right - 170, legendY = top + 16
    out += "<line x1=\"\(format(legendX))\" y1=\"\(format(legendY))\" x2=\"\(format(legendX + 20))\" y2=\"\(format(legendY))\" "
      + "stroke=\"#1f77b4\" stroke-width=\"1.5\"/><text x=\"\(format(legendX + 25))\" y=\"\(format(legendY + 4))\">training</text>"
    out += "<circle cx=\"\(format(legendX + 95))\" cy=\"\(format(legendY))\" r=\"3.5\" fill=\"#d62728\"/>"
    out += "<text x=\"\(format(legendX + 103))\" y=\"\(format(legendY + 4))\">validation</text>\n"
    out += "</g>\n"
    return out
  }

  /// Round-number ticks covering [low, high]: about five steps of 1, 2 or 5 times a power of
  /// ten, the first at or below `low` and the last at or above `high`.
  public static func niceTicks(low: Double, high: Double, count: Int = 5) -> [Double] {
    precondition(high > low && low.isFinite && high.isFinite, "empty or non-finite range")
    let rough = (high - low) / Double(count)
    let magnitude = pow(10, (log10(rough)).rounded(.down))
    let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= rough } ?? 10 * magnitude
    let first = (low / step).rounded(.down), last = (high / step).rounded(.up)
    return stride(from: first, through: last, by: 1).map { $0 * step }
  }

  static func label(_ value: Double) -> String {
    if value == 0 { return "0" }
    let magnitude = abs(value)
    if magnitude >= 1e5 || magnitude < 1e-3 { return String(format: "%.1e", value) }
    var text = String(format: "%.4f", value)
    while text.hasSuffix("0") { text.removeLast() }
    if text.hasSuffix(".") { text.removeLast() }
    return text
  }

  static func format(_ value: Double) -> String { String(format: "%.1f", value) }

  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
  }
}
