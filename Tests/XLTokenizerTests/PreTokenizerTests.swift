import Testing

@testable import XLTokenizer

// Expected pieces were produced with Python's `regex` module running the GPT-2 pattern after
// isolating every character of category Nd, Nl or No.
@Suite("Pre-tokenizer splits")
struct PreTokenizerTests {
  let smollm = try! PreTokenizer(name: "smollm")
  let gpt2 = try! PreTokenizer(name: "gpt2")

  @Test("numerics isolated one by one")
  func numerics() {
    #expect(smollm.pieces(of: "I have 123 apples") == ["I", " have", " ", "1", "2", "3", " apples"])
    #expect(smollm.pieces(of: "x² + ½ Ⅷ٣") == ["x", "²", " +", " ", "½", " ", "Ⅷ", "٣"])
  }

  @Test("gpt2 keeps digit runs")
  func gpt2Digits() {
    #expect(gpt2.pieces(of: "I have 123 apples") == ["I", " have", " 123", " apples"])
    #expect(gpt2.pieces(of: "x² + ½ Ⅷ٣") == ["x", "²", " +", " ½", " Ⅷ٣"])
  }

  @Test("contractions are case-sensitive")
  func contractions() {
    #expect(
      smollm.pieces(of: "don't they're I'M 'tis")
        == ["don", "'t", " they", "'re", " I", "'", "M", " '", "tis"])
    #expect(smollm.pieces(of: "we've you'll I'd") == ["we", "'ve", " you", "'ll", " I", "'d"])
  }

  @Test("whitespace runs give back last space")
  func whitespaceRuns() {
    #expect(smollm.pieces(of: "a  b   c\n\n d") == ["a", " ", " b", "  ", " c", "\n\n", " d"])
    #expect(smollm.pieces(of: "foo  bar") == ["foo", " ", " bar"])
    #expect(smollm.pieces(of: " \n x") == [" \n", " x"])
    #expect(smollm.pieces(of: "tab\t\tx") == ["tab", "\t", "\t", "x"])
  }

  @Test("trailing whitespace stays whole")
  func trailingWhitespace() {
    #expect(smollm.pieces(of: "end   ") == ["end", "   "])
    #expect(smollm.pieces(of: "a.\n\n") == ["a", ".", "\n\n"])
    #expect(smollm.pieces(of: "died 4") == ["died", " ", "4"])
  }

  @Test("CRLF splits in two")
  func crlf() {
    #expect(smollm.pieces(of: "line\r\nnext") == ["line", "\r", "\n", "next"])
  }

  @Test("emoji and marks are other")
  func emojiAndMarks() {
    #expect(smollm.pieces(of: "Hi 😸!") == ["Hi", " 😸!"])
    #expect(smollm.pieces(of: "e\u{301}!") == ["e", "\u{301}!"])
  }

  @Test("empty text has no pieces")
  func empty() {
    #expect(smollm.pieces(of: "").isEmpty)
  }

  @Test("unknown pre-tokenizer rejected")
  func unknownName() {
    #expect(throws: TokenizerError.unsupportedPreTokenizer("llama3")) {
      _ = try PreTokenizer(name: "llama3")
    }
  }
}
