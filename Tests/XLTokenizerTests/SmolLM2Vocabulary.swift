import Foundation
import XLModels
import XLTokenizer

/// Loads the SmolLM2 tokenizer for the fixture tests, or returns nil when no vocabulary is
/// available (the caller skips with a note).
///
/// Reads the model named by `XLLAMA_MODEL` (the default model's GGUF file, whose metadata
/// carries the vocabulary and merges, or a Hugging Face folder with `tokenizer.json`).
func loadSmolLM2Tokenizer() throws -> BPETokenizer? {
  guard let path = ProcessInfo.processInfo.environment["XLLAMA_MODEL"], !path.isEmpty,
    FileManager.default.fileExists(atPath: path)
  else {
    print("XLLAMA_MODEL is unset or missing; skipping the SmolLM2 vocabulary tests")
    return nil
  }
  return try ModelLoader.open(path).2
}
