import Testing
import XLTensors
@testable import XLTraining

/// The fused stage-3 row loss against the separate cross-entropy and KL kernels, on random
/// logits with a spread of 8 (so that softmax is far from uniform). Tolerance: 1e-5 relative
/// on the loss terms, 1e-6 absolute on gradient entries (each is at most 1 in size).
@Suite("Distillation row loss")
struct DistillationRowTests {
  @Test("fused row equals the kernels", arguments: [Int32(7), -1])
  func fusedRow(target: Int32) {
    let v = 1000
    let student = randomFloats(v, seed: 11, scale: 8)
    let teacher = randomFloats(v, seed: 12, scale: 8)
    let crossEntropyScale: Float = target >= 0 ? 0.25 : 0
    let klScale: Float = 0.5
    var fusedGrad = [Float](repeating: 0, count: v)
    let parts = EndToEndPass.distillationRow(
      student: student, teacher: teacher, target: target, vocabularySize: v,
      crossEntropyScale: crossEntropyScale, klScale: klScale, logitsGrad: &fusedGrad)

    var normalizer: [Float] = [0]
    var teacherNormalizer: [Float] = [0]
    let crossEntropy = TrainingKernels.crossEntropyLoss(
      logits: student, targets: [target], rows: 1, vocabSize: v, savedLogNormalizer: &normalizer)
    let kl = TrainingKernels.klDivergenceLoss(
      studentLogits: student, teacherLogits: teacher, rows: 1, vocabSize: v,
      savedStudentLogNormalizer: &normalizer, savedTeacherLogNormalizer: &teacherNormalizer)
    var expectedGrad = [Float](repeating: 0, count: v)
    TrainingKernels.crossEntropyLossBackward(
      logits: student, targets: [target], rows: 1, vocabSize: v, savedLogNormalizer: normalizer,
      scale: crossEntropyScale, logitsGrad: &expectedGrad)
    TrainingKernels.klDivergenceLossBackward(
      studentLogits: student, teacherLogits: teacher, rows: 1, vocabSize: v,
      savedStudentLogNormalizer: normalizer, savedTeacherLogNormalizer: teacherNormalizer,
      scale: klScale, studentLogitsGrad: &expectedGrad)

    #expect(abs(parts.crossEntropy - Double(crossEntropy)) <= 1e-5 * max(1, Double(crossEntropy)))
    #expect(abs(parts.kl - Double(kl)) <= 1e-5 * max(1, Double(kl)))
    #expect(kl > 0.1)
    let worst = zip(fusedGrad, expectedGrad).map { abs($0 - $1) }.max()!
    #expect(worst <= 1e-6)
  }

  @Test("row without teacher is cross-entropy alone", arguments: [Int32(7), -1])
  func crossEntropyRow(target: Int32) {
    let v = 1000
    let student = randomFloats(v, seed: 13, scale: 8)
    let crossEntropyScale: Float = target >= 0 ? 0.25 : 0
    var fusedGrad = [Float](repeating: 0, count: v)
    let parts = EndToEndPass.distillationRow(
      student: student, teacher: nil, target: target, vocabularySize: v,
      crossEntropyScale: crossEntropyScale, klScale: 0.5, logitsGrad: &fusedGrad)

    var normalizer: [Float] = [0]
    let crossEntropy = TrainingKernels.crossEntropyLoss(
      logits: student, targets: [target], rows: 1, vocabSize: v, savedLogNormalizer: &normalizer)
    var expectedGrad = [Float](repeating: 0, count: v)
    TrainingKernels.crossEntropyLossBackward(
      logits: student, targets: [target], rows: 1, vocabSize: v, savedLogNormalizer: normalizer,
      scale: crossEntropyScale, logitsGrad: &expectedGrad)

    #expect(abs(parts.crossEntropy - Double(crossEntropy)) <= 1e-5 * max(1, Double(crossEntropy)))
    #expect(parts.kl == 0)
    let worst = zip(fusedGrad, expectedGrad).map { abs($0 - $1) }.max()!
    #expect(worst <= 1e-6)
  }
}
