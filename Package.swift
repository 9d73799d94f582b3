// swift-tools-version:6.0
// The package is layered in the order data flows through it:
// files (XLFormats) → tensors and kernels (XLTensors) → tokenizer (XLTokenizer)
// → models (XLModels) → generation (XLGeneration) → the umbrella library (XLlama)
// → the `xllama` command line.
import PackageDescription

#if os(Linux)
let blasSettings: [LinkerSetting] = [.linkedLibrary("openblas")]
#else
let blasSettings: [LinkerSetting] = [.linkedFramework("Accelerate")]
#endif

let optimized: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
  name: "xllama",
  platforms: [.macOS(.v14)],
  products: [
    .library(name: "XLlama", targets: ["XLlama"]),
    .executable(name: "xllama", targets: ["XLlamaCLI"]),
  ],
  targets: [
    .systemLibrary(
      name: "CBLAS",
      path: "Sources/CBLAS",
      providers: [.apt(["libopenblas-dev"])]),
    .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
    .target(
      name: "XLTensors",
      dependencies: ["CKernels", .target(name: "CBLAS", condition: .when(platforms: [.linux]))],
      swiftSettings: optimized,
      linkerSettings: blasSettings),
    .target(name: "XLFormats", dependencies: ["XLTensors"], swiftSettings: optimized),
    .target(name: "XLTokenizer", swiftSettings: optimized),
    .target(
      name: "XLModels", dependencies: ["CKernels", "XLTensors", "XLFormats", "XLTokenizer"],
      swiftSettings: optimized),
    .target(
      name: "XLGeneration", dependencies: ["XLTensors", "XLModels", "XLTokenizer"],
      swiftSettings: optimized),
    .target(
      name: "XLTraining", dependencies: ["CKernels", "XLTensors", "XLModels", "XLTokenizer"],
      swiftSettings: optimized),
    .target(
      name: "XLEval", dependencies: ["XLModels", "XLTokenizer"], swiftSettings: optimized),
    .target(
      name: "XLlama",
      dependencies: [
        "XLTensors", "XLFormats", "XLTokenizer", "XLModels", "XLGeneration", "XLTraining", "XLEval",
      ]),
    .executableTarget(name: "XLlamaCLI", dependencies: ["XLlama"], swiftSettings: optimized),
    .testTarget(name: "XLTensorsTests", dependencies: ["XLTensors"]),
    .testTarget(name: "XLFormatsTests", dependencies: ["XLFormats"], resources: [.copy("Resources")]),
    .testTarget(name: "XLTokenizerTests", dependencies: ["XLTokenizer", "XLModels"]),
    .testTarget(name: "XLModelsTests", dependencies: ["CKernels", "XLModels", "XLFormats"]),
    .testTarget(name: "XLGenerationTests", dependencies: ["XLGeneration", "XLModels"]),
    .testTarget(name: "XLTrainingTests", dependencies: ["CKernels", "XLTraining", "XLModels", "XLTensors"]),
    .testTarget(name: "XLEvalTests", dependencies: ["XLEval", "XLModels"]),
    .testTarget(
      name: "XLlamaCLITests", dependencies: ["XLlamaCLI", "XLFormats", "XLModels", "XLTensors"]),
  ]
)
