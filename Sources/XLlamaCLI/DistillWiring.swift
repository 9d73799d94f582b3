import Foundation
import XLlama

/// The student's trainable weights and the factory of each stage's objective.
struct DistillationWiring {
  let parameters: ParameterStore
  let objectiveFactory: (MOHAWKStage) throws -> TrainingObjective
}

extension MOHAWKObjective: ValidationLossMeasuring {}

/// Loads the teacher and connects it to the student's parameters.
func makeDistillationWiring(
  teacherPath: String, studentConfiguration: ModelConfiguration, studentWeights: any TensorProvider, studentPath: String
) throws -> DistillationWiring {
  let start = Date()
  let loaded = try ModelLoader.load(teacherPath)
  try DistillCommand.checkCompatible(
    teacher: loaded.configuration, student: studentConfiguration, teacherPath: teacherPath, studentPath: studentPath)
  guard let teacher = loaded.model as? LlamaModel else {
    throw CommandLineError.conflicting("\(teacherPath) did not load as a Llama model")
  }
  stderrLine(String(format: "loaded the teacher %@ in %.1f s", teacherPath, Date().timeIntervalSince(start)))
  let parameters = try makeStudentParameterStore(from: studentWeights, configuration: studentConfiguration)
  return DistillationWiring(parameters: parameters) { stage in
    MOHAWKObjective(stage: stage, teacher: teacher, studentConfiguration: studentConfiguration)
  }
}
