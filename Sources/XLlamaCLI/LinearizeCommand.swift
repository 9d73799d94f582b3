import Foundation
import XLlama

enum LinearizeCommand: Command {
  static let name = "linearize"
  static let summary = "Build an xLlama student from a Llama teacher and write it as a Hugging Face folder."
  static let usage = "--teacher PATH --out DIR [--dtype f32|bf16|f16] [--seed N] [--force]"
  static let options: [OptionSpec] = [
    OptionSpec(name: "--teacher", valueName: "PATH", help: "a Llama .gguf file or Hugging Face folder"),
    OptionSpec(name: "--out", valueName: "DIR", help: "folder to write the student to"),
    OptionSpec(name: "--dtype", valueName: "TYPE", help: "weight format: f32, bf16 or f16", defaultDescription: "f32"),
    OptionSpec(name: "--seed", valueName: "N", help: "seed of the new gate weights", defaultDescription: "0"),
    OptionSpec(name: "--force", valueName: nil, help: "replace the files of an existing non-empty folder"),
  ]

  static func run(_ options: ParsedOptions) throws {
    let teacherPath = try options.required("--teacher")
    let out = URL(fileURLWithPath: try options.required("--out"))
    let dtypeName = options.string("--dtype") ?? "f32"
    let dtypes: [String: SafetensorsDType] = ["f32": .f32, "bf16": .bf16, "f16": .f16]
    guard let dtype = dtypes[dtypeName.lowercased()] else {
      throw CommandLineError.invalidValue(option: "--dtype", value: dtypeName, expected: "f32, bf16 or f16")
    }
    guard let seed = UInt64(options.string("--seed") ?? "0") else {
      throw CommandLineError.invalidValue(option: "--seed", value: options.string("--seed") ?? "", expected: "a non-negative integer")
    }
    let existing = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
    if !existing.isEmpty && !options.flag("--force") {
      throw CommandLineError.conflicting("\(out.path) exists and is not empty; choose another --out or pass --force")
    }

    let start = Date()
    let (teacher, weights, tokenizer, template, _) = try ModelLoader.open(teacherPath)
    guard !teacher.isStudent else {
      throw CommandLineError.conflicting("\(teacherPath) is already an xLlama student")
    }
    stderrLine("linearizing \(teacherPath): \(teacher.layerCount) layers, width \(teacher.hiddenSize), \(teacher.headCount) heads (\(teacher.keyValueHeadCount) key/value)")
    let student = Linearization.studentConfiguration(for: teacher, seed: seed)
    let tensors = try Linearization.studentTensors(teacher: teacher, weights: weights, source: teacherPath, seed: seed)
    try CheckpointWriter.write(
      configuration: student, tensors: tensors, dtype: dtype, tokenizer: tokenizer, chatTemplate: template, to: out)
    stderrLine(String(format: "wrote the student (%@, %@) to %@ in %.1f s", formatCount(parameterCount(student)), dtypeName, out.path, Date().timeIntervalSince(start)))
  }
}
