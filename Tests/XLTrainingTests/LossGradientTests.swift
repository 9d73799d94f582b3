import Foundation
import Testing
import XLTensors
@testable import XLTraining

private let tolerance = 3e-3

@Suite("Loss gradients")
struct LossGradientTests {
  @Test("MSE value and gradient")
  func mse() {
    let a: [Float] = [1, 2, 3, 4], b: [Float] = [0, 2, 5, 4]
    #expect(TrainingKernels.mseLoss(prediction: a, target: b, count: 4) == 1.25)

    let prediction = randomFloats(12, seed: 21)
    let target = randomFloats(12, seed: 22)
    var grad = [Float](repeating: 0, count: 12)
    TrainingKernels.mseLossBackward(
      prediction: prediction, target: target, count: 12, predictionGrad: &grad)
    let error = worstGradientError(input: prediction, analytic: grad) {
      Double(TrainingKernels.mseLoss(prediction: $0, target: target, count: 12))
    }
    #expect(error < tolerance)
  }

  @Test("L2 alignment value and gradient")
  func l2Alignment() {
    let a: [Float] = [3, 4, 0, 0], b: [Float] = [0, 0, 0, 0]
    #expect(TrainingKernels.l2AlignmentLoss(prediction: a, target: b, rows: 2, dim: 2) == 2.5)

    let rows = 3, dim = 5
    let prediction = randomFloats(rows * dim, seed: 23)
    let target = randomFloats(rows * dim, seed: 24)
    var grad = [Float](repeating: 0, count: rows * dim)
    TrainingKernels.l2AlignmentLossBackward(
      prediction: prediction, target: target, rows: rows, dim: dim, predictionGrad: &grad)
    let error = worstGradientError(input: prediction, analytic: grad) {
      Double(TrainingKernels.l2AlignmentLoss(prediction: $0, target: target, rows: rows, dim: dim))
    }
    #expect(error < tolerance)
  }

  @Test("L2 alignment safe at zero distance")
  func l2AlignmentAtZero() {
    let a: [Float] = [1, 2, 3, 4]
    var grad = [Float](repeating: 0, count: 4)
    TrainingKernels.l2AlignmentLossBackward(
      prediction: a, target: a, rows: 2, dim: 2, predictionGrad: &grad)
    #expect(grad == [0, 0, 0, 0])
    #expect(TrainingKernels.l2AlignmentLoss(prediction: a, target: a, rows: 2, dim: 2) == 0)
  }

  @Test("cross-entropy value and gradient")
  func crossEntropy() {
    let rows = 3, vocabSize = 7
    let logits = randomFloats(rows * vocabSize, seed: 25, scale: 3)
    let targets: [Int32] = [2, -1, 6]
    var saved = [Float](repeating: 0, count: rows)
    let loss = TrainingKernels.crossEntropyLoss(
      logits: logits, targets: targets, rows: rows, vocabSize: vocabSize,
      savedLogNormalizer: &saved)

    var expected: Double = 0
    for (row, target) in [(0, 2), (2, 6)] {
      let values = logits[(row * vocabSize)..<((row + 1) * vocabSize)].map(Double.init)
      let normalizer = log(values.map { exp($0) }.reduce(0, +))
      expected += (normalizer - values[target]) / 2
    }
    #expect(abs(Double(loss) - expected) < 1e-5, "loss \(loss), expected \(expected)")

    var grad = [Float](repeating: 0, count: logits.count)
    TrainingKernels.crossEntropyLossBackward(
      logits: logits, targets: targets, rows: rows, vocabSize: vocabSize,
      savedLogNormalizer: saved, logitsGrad: &grad)
    #expect(grad[vocabSize..<(2 * vocabSize)].allSatisfy { $0 == 0 })
    let error = worstGradientError(input: logits, analytic: grad) { probe in
      var scratch = [Float](repeating: 0, count: rows)
      return Double(TrainingKernels.crossEntropyLoss(
        logits: probe, targets: targets, rows: rows, vocabSize: vocabSize,
        savedLogNormalizer: &scratch))
    }
    #expect(error < tolerance)
  }

  @Test("KL value and gradient")
  func klDivergence() {
    let rows = 3, vocabSize = 6
    let student = randomFloats(rows * vocabSize, seed: 26, scale: 3)
    let teacher = randomFloats(rows * vocabSize, seed: 27, scale: 3)
    func loss(_ student: [Float]) -> Float {
      var savedStudent = [Float](repeating: 0, count: rows)
      var savedTeacher = [Float](repeating: 0, count: rows)
      return TrainingKernels.klDivergenceLoss(
        studentLogits: student, teacherLogits: teacher, rows: rows, vocabSize: vocabSize,
        savedStudentLogNormalizer: &savedStudent, savedTeacherLogNormalizer: &savedTeacher)
    }
    #expect(abs(loss(teacher)) < 1e-6, "KL of a distribution with itself, tolerance 1e-6")
    #expect(loss(student) > 0)

    var savedStudent = [Float](repeating: 0, count: rows)
    var savedTeacher = [Float](repeating: 0, count: rows)
    _ = TrainingKernels.klDivergenceLoss(
      studentLogits: student, teacherLogits: teacher, rows: rows, vocabSize: vocabSize,
      savedStudentLogNormalizer: &savedStudent, savedTeacherLogNormalizer: &savedTeacher)
    var grad = [Float](repeating: 0, count: student.count)
    TrainingKernels.klDivergenceLossBackward(
      studentLogits: student, teacherLogits: teacher, rows: rows, vocabSize: vocabSize,
      savedStudentLogNormalizer: savedStudent, savedTeacherLogNormalizer: savedTeacher,
      studentLogitsGrad: &grad)
    let error = worstGradientError(input: student, analytic: grad) { Double(loss($0)) }
    #expect(error < tolerance)
  }

  @Test("cross-entropy at full vocabulary")
  func crossEntropyLargeVocabulary() {
    let rows = 2, vocabSize = 49152
    var logits = [Float](repeating: 0, count: rows * vocabSize)
    logits[vocabSize + 5] = 100
    var saved = [Float](repeating: 0, count: rows)
    let loss = TrainingKernels.crossEntropyLoss(
      logits: logits, targets: [0, 5], rows: rows, vocabSize: vocabSize,
      savedLogNormalizer: &saved)
    let expected = log(Double(vocabSize)) / 2
    #expect(abs(Double(loss) - expected) < 1e-4, "loss \(loss), expected \(expected)")
  }
}

@Suite("Gradient checker")
struct GradientCheckerTests {
  @Test("checker flags a wrong gradient")
  func flagsWrongGradient() {
    let x: [Float] = [0.5, -1, 2]
    let wrong: [Float] = [1, -2, 4.5]
    let error = worstGradientError(input: x, analytic: wrong) { probe in
      probe.reduce(0) { $0 + Double($1 * $1) }
    }
    #expect(error > 0.1, "x² has gradient 2x; the last entry is off by 0.5")
  }
}
