import Foundation
import XLTensors

// The MOHAWK stage losses and their gradients. Every loss sums in Double and returns a Float.
// Every backward adds `scale ·` the gradient of the loss into the buffer it is given, so a
// stage that sums losses over layers passes `scale: 1` to each.

// MARK: - Stage 1: attention-matrix MSE

extension TrainingKernels {
  /// Mean squared error over all elements, as `F.mse_loss` with reduction "mean":
  /// `L = mean((prediction − target)²)`.
  ///
  /// prediction, target: (count) each, (NH, S, S) per layer in stage 1.
  public static func mseLoss(
    prediction: UnsafePointer<Float>, target: UnsafePointer<Float>, count: Int
  ) -> Float {
    precondition(count > 0, "mean of zero elements")
    var total: Double = 0
    for i in 0..<count {
      let difference = Double(prediction[i] - target[i])
      total += difference * difference
    }
    return Float(total / Double(count))
  }

  /// Gradient of the mean squared error: `dprediction += scale · 2 · (prediction − target) / N`.
  public static func mseLossBackward(
    prediction: UnsafePointer<Float>, target: UnsafePointer<Float>, count: Int,
    scale: Float = 1, predictionGrad: UnsafeMutablePointer<Float>
  ) {
    let factor = scale * 2 / Float(count)
    for i in 0..<count { predictionGrad[i] += factor * (prediction[i] - target[i]) }
  }
}

// MARK: - Stage 2: L2 hidden-state alignment

extension TrainingKernels {
  /// Mean over tokens of the L2 distance over D: `L = (1/S) Σ_t ‖prediction_t − target_t‖₂`.
  ///
  /// prediction, target: (S, D) each.
  public static func l2AlignmentLoss(
    prediction: UnsafePointer<Float>, target: UnsafePointer<Float>, rows: Int, dim: Int
  ) -> Float {
    precondition(rows > 0, "mean over zero tokens")
    var total: Double = 0
    for row in 0..<rows {
      total += rowDistance(prediction + row * dim, target + row * dim, dim)
    }
    return Float(total / Double(rows))
  }

  /// Gradient of the L2 alignment loss:
  /// `dprediction_t += scale / S · (prediction_t − target_t) / ‖prediction_t − target_t‖`.
  ///
  /// The norm is not differentiable at zero; a row whose distance is exactly zero gets a zero
  /// gradient (the subgradient PyTorch's `vector_norm` also returns there).
  public static func l2AlignmentLossBackward(
    prediction: UnsafePointer<Float>, target: UnsafePointer<Float>, rows: Int, dim: Int,
    scale: Float = 1, predictionGrad: UnsafeMutablePointer<Float>
  ) {
    for row in 0..<rows {
      let a = prediction + row * dim
      let b = target + row * dim
      let distance = rowDistance(a, b, dim)
      if distance == 0 { continue }
      let factor = Float(Double(scale) / Double(rows) / distance)
      let grad = predictionGrad + row * dim
      for j in 0..<dim { grad[j] += factor * (a[j] - b[j]) }
    }
  }

  static func rowDistance(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ dim: Int
  ) -> Double {
    var squares: Double = 0
    for j in 0..<dim {
      let difference = Double(a[j] - b[j])
      squares += difference * difference
    }
    return squares.squareRoot()
  }
}

// MARK: - Stage 3: next-token cross-entropy and KL(teacher ‖ student)

extension TrainingKernels {
  /// Log of the softmax normalizer of one row, `log Σ_v exp(row_v)`, stable for large values.
  static func logSumExp(_ row: UnsafePointer<Float>, count: Int) -> Float {
    var largest = -Float.infinity
    for v in 0..<count { largest = max(largest, row[v]) }
    var total: Double = 0
    for v in 0..<count { total += Double(exp(row[v] - largest)) }
    return largest + Float(log(total))
  }

  /// Cross-entropy of the next token averaged over the rows that have a target:
  /// `L = −(1/N) Σ_t log softmax(logits_t)[target_t]`, where rows with a negative target are
  /// skipped (as PyTorch's `ignore_index`) and N counts the others. Row t contains the logits
  /// that predict `target_t`, so a caller passes logits of positions 0..<S−1 and ids 1..<S.
  ///
  /// logits (S, V), targets (S) → loss; saves savedLogNormalizer (S) for the backward pass.
  /// Memory: nothing of size V is allocated, so V = 49152 costs no extra (S, V) buffer.
  public static func crossEntropyLoss(
    logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows: Int, vocabSize: Int,
    savedLogNormalizer: UnsafeMutablePointer<Float>
  ) -> Float {
    var total: Double = 0
    var counted = 0
    for row in 0..<rows {
      let rowLogits = logits + row * vocabSize
      let normalizer = logSumExp(rowLogits, count: vocabSize)
      savedLogNormalizer[row] = normalizer
      let target = Int(targets[row])
      if target < 0 { continue }
      precondition(target < vocabSize, "target \(target) outside 0..<\(vocabSize)")
      total += Double(normalizer - rowLogits[target])
      counted += 1
    }
    return counted == 0 ? 0 : Float(total / Double(counted))
  }

  /// Gradient of the cross-entropy: `dlogits_t += scale / N · (softmax(logits_t) − onehot(target_t))`
  /// for rows with a target; rows with a negative target get nothing.
  ///
  /// logits (S, V), targets (S), savedLogNormalizer (S) → logitsGrad (S, V).
  public static func crossEntropyLossBackward(
    logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows: Int, vocabSize: Int,
    savedLogNormalizer: UnsafePointer<Float>, scale: Float = 1,
    logitsGrad: UnsafeMutablePointer<Float>
  ) {
    var counted = 0
    for row in 0..<rows where targets[row] >= 0 { counted += 1 }
    if counted == 0 { return }
    let factor = scale / Float(counted)
    for row in 0..<rows {
      let target = Int(targets[row])
      if target < 0 { continue }
      let rowLogits = logits + row * vocabSize
      let grad = logitsGrad + row * vocabSize
      let normalizer = savedLogNormalizer[row]
      for v in 0..<vocabSize { grad[v] += factor * exp(rowLogits[v] - normalizer) }
      grad[target] -= factor
    }
  }

  /// KL(teacher ‖ student) summed over V and averaged over the S rows:
  /// `L = (1/S) Σ_t Σ_v p_t,v · (log p_t,v − log q_t,v)` with p = softmax(teacherLogits),
  /// q = softmax(studentLogits).
  ///
  /// NOTE: the original xLlama training code is described as summing KL over positions. This
  /// averages instead (as `.sum(-1).mean()` in PyTorch), which keeps the term on the
  /// cross-entropy's scale for any S. The summed value is S times this one.
  ///
  /// studentLogits, teacherLogits (S, V) → loss; saves savedStudentLogNormalizer and
  /// savedTeacherLogNormalizer (S) for the backward pass.
  public static func klDivergenceLoss(
    studentLogits: UnsafePointer<Float>, teacherLogits: UnsafePointer<Float>,
    rows: Int, vocabSize: Int,
    savedStudentLogNormalizer: UnsafeMutablePointer<Float>,
    savedTeacherLogNormalizer: UnsafeMutablePointer<Float>
  ) -> Float {
    precondition(rows > 0, "mean over zero positions")
    var total: Double = 0
    for row in 0..<rows {
      let student = studentLogits + row * vocabSize
      let teacher = teacherLogits + row * vocabSize
      let studentNormalizer = logSumExp(student, count: vocabSize)
      let teacherNormalizer = logSumExp(teacher, count: vocabSize)
      savedStudentLogNormalizer[row] = studentNormalizer
      savedTeacherLogNormalizer[row] = teacherNormalizer

      var rowTotal: Double = 0
      for v in 0..<vocabSize {
        let logP = teacher[v] - teacherNormalizer
        let logQ = student[v] - studentNormalizer
        rowTotal += Double(exp(logP)) * Double(logP - logQ)
      }
      total += rowTotal
    }
    return Float(total / Double(rows))
  }

  /// Gradient of the KL term with respect to the student's logits:
  /// `dstudent_t += scale / S · (softmax(student_t) − softmax(teacher_t))`.
  ///
  /// studentLogits, teacherLogits (S, V), saved normalizers (S) → studentLogitsGrad (S, V).
  public static func klDivergenceLossBackward(
    studentLogits: UnsafePointer<Float>, teacherLogits: UnsafePointer<Float>,
    rows: Int, vocabSize: Int,
    savedStudentLogNormalizer: UnsafePointer<Float>,
    savedTeacherLogNormalizer: UnsafePointer<Float>,
    scale: Float = 1, studentLogitsGrad: UnsafeMutablePointer<Float>
  ) {
    let factor = scale / Float(rows)
    for row in 0..<rows {
      let student = studentLogits + row * vocabSize
      let teacher = teacherLogits + row * vocabSize
      let grad = studentLogitsGrad + row * vocabSize
      let studentNormalizer = savedStudentLogNormalizer[row]
      let teacherNormalizer = savedTeacherLogNormalizer[row]
      for v in 0..<vocabSize {
        let q = exp(student[v] - studentNormalizer)
        let p = exp(teacher[v] - teacherNormalizer)
        grad[v] += factor * (q - p)
      }
    }
  }
}
