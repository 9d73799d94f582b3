import Foundation

/// Byte-level BPE tokenizer (GPT-2 style) with special tokens matched before BPE.
///
/// Encoding first cuts special tokens out of the raw text (leftmost, longest match). The
/// pre-tokenizer splits the text between them into pieces, and the UTF-8 bytes of each piece
/// are mapped to the GPT-2 byte alphabet. BPE then applies merges lowest rank first, leftmost
/// on ties. No BOS or EOS is added. The result equals Hugging Face `tokenizers` for vocabularies whose
/// merges produce every multi-byte token (`ignore_merges` off).
public final class BPETokenizer: Sendable {
  /// Token strings indexed by id, in the GPT-2 byte alphabet (special tokens as plain text).
  let tokens: [String]
  /// Raw bytes each id decodes to.
  private let tokenBytes: [[UInt8]]
  private let tokenIDs: [String: Int]
  /// Merge table keyed by `left << 32 | right` token ids.
  let merges: [UInt64: Merge]
  /// Token id of each single byte, or -1 where the vocabulary lacks that byte.
  private let byteTokenIDs: [Int32]
  private let specialMatcher: SpecialTokenMatcher
  let preTokenizer: PreTokenizer
  private let cache = WordCache(capacity: 100_000)

  /// Id of the beginning-of-sequence token, if the model has one.
  public let bosTokenID: Int?
  /// Id of the end-of-sequence token, if the model has one.
  public let eosTokenID: Int?
  /// Id used for bytes missing from the vocabulary, if any.
  public let unknownTokenID: Int?
  /// Ids of control and user-defined tokens, matched in raw text before BPE.
  public let specialTokenIDs: Set<Int>

  /// Number of token ids.
  public var vocabularySize: Int { tokens.count }

  struct Merge {
    var rank: Int32
    var mergedID: Int32
  }

  /// Builds a tokenizer from arrays laid out as GGUF stores them.
  ///
  /// - Parameters:
  ///   - vocabulary: token strings indexed by id (`tokenizer.ggml.tokens`).
  ///   - merges: "left right" strings, highest priority first (`tokenizer.ggml.merges`).
  ///   - tokenTypes: per-id type (`tokenizer.ggml.token_type`); 3 (control) and 4 (user-defined)
  ///     mark special tokens. When nil, no token is special.
  ///   - preTokenizer: `smollm` (numerics isolated, then the GPT-2 pattern) or `gpt2`.
  /// - Throws: `TokenizerError` for malformed merges, merges over unknown tokens, a token-type
  ///   array of the wrong length, out-of-range special ids or an unknown pre-tokenizer.
  public init(
    vocabulary: [String], merges: [String], tokenTypes: [Int]? = nil, bosTokenID: Int?,
    eosTokenID: Int?, unknownTokenID: Int?, preTokenizer: String = "smollm"
  ) throws {
    self.preTokenizer = try PreTokenizer(name: preTokenizer)
    if let tokenTypes, tokenTypes.count != vocabulary.count {
      throw TokenizerError.tokenTypeCountMismatch(
        vocabulary: vocabulary.count, tokenTypes: tokenTypes.count)
    }
    for (name, id) in [("BOS", bosTokenID), ("EOS", eosTokenID), ("unknown", unknownTokenID)] {
      if let id, !(0..<vocabulary.count).contains(id) {
        throw TokenizerError.tokenIDOutOfRange(name: name, id: id, vocabularySize: vocabulary.count)
      }
    }
    self.bosTokenID = bosTokenID
    self.eosTokenID = eosTokenID
    self.unknownTokenID = unknownTokenID
    self.tokens = vocabulary

    var ids: [String: Int] = [:]
    ids.reserveCapacity(vocabulary.count)
    for (id, token) in vocabulary.enumerated() where ids[token] == nil {
      ids[token] = id
    }
    self.tokenIDs = ids

    var special = Set<Int>()
    if let tokenTypes {
      for (id, type) in tokenTypes.enumerated() where type == 3 || type == 4 {
        special.insert(id)
      }
    }
    self.specialTokenIDs = special
    self.specialMatcher = SpecialTokenMatcher(
      tokens: special.map { (vocabulary[$0], $0) }.filter { !$0.0.isEmpty })

    self.tokenBytes = vocabulary.enumerated().map { id, token in
      special.contains(id) ? Array(token.utf8) : ByteLevel.decode(token)
    }

    var byteIDs = [Int32](repeating: -1, count: 256)
    for byte in 0..<256 {
      let text = ByteLevel.encode([UInt8(byte)])
      if let id = ids[text] {
        byteIDs[byte] = Int32(id)
      } else if let unknownTokenID {
        byteIDs[byte] = Int32(unknownTokenID)
      }
    }
    self.byteTokenIDs = byteIDs

    var table: [UInt64: Merge] = [:]
    table.reserveCapacity(merges.count)
    for (index, entry) in merges.enumerated() {
      guard let space = entry.firstIndex(of: " ") else {
        throw TokenizerError.malformedMerge(index: index, entry: entry)
      }
      let left = String(entry[..<space])
      let right = String(entry[entry.index(after: space)...])
      guard !left.isEmpty, !right.isEmpty else {
        throw TokenizerError.malformedMerge(index: index, entry: entry)
      }
      guard let leftID = ids[left] else {
        throw TokenizerError.mergeTokenNotInVocabulary(index: index, token: left)
      }
      guard let rightID = ids[right] else {
        throw TokenizerError.mergeTokenNotInVocabulary(index: index, token: right)
      }
      guard let mergedID = ids[left + right] else {
        throw TokenizerError.mergeTokenNotInVocabulary(index: index, token: left + right)
      }
      let key = UInt64(leftID) << 32 | UInt64(rightID)
      if table[key] == nil {
        table[key] = Merge(rank: Int32(index), mergedID: Int32(mergedID))
      }
    }
    self.merges = table
  }

  // MARK: - Lookup

  /// Returns the token string of `id` (byte-level alphabet), or nil when out of range.
  public func token(for id: Int) -> String? {
    tokens.indices.contains(id) ? tokens[id] : nil
  }

  /// Returns the id of a token string (byte-level alphabet), or nil when it is not in the vocabulary.
  public func id(for token: String) -> Int? {
    tokenIDs[token]
  }

  // MARK: - Encoding

  /// Encodes text to token ids without adding BOS or EOS. Special-token text such as
  /// `<|im_end|>` becomes its single id.
  public func encode(_ text: String) -> [Int] {
    let scalars = Array(text.unicodeScalars)
    let classes = scalars.map(ScalarClass.of)
    var ids: [Int] = []
    ids.reserveCapacity(scalars.count / 3 + 1)
    var pieces: [Range<Int>] = []
    var pieceBytes: [UInt8] = []

    scalars.withUnsafeBufferPointer { scalarBuffer in
      classes.withUnsafeBufferPointer { classBuffer in
        var start = 0
        let encodeStretch = { (range: Range<Int>, ids: inout [Int]) in
          pieces.removeAll(keepingCapacity: true)
          self.preTokenizer.split(scalarBuffer, classes: classBuffer, range: range, into: &pieces)
          for piece in pieces {
            pieceBytes.removeAll(keepingCapacity: true)
            for index in piece {
              pieceBytes.append(contentsOf: UTF8.encode(scalarBuffer[index])!)
            }
            self.appendWord(pieceBytes, to: &ids)
          }
        }
        while let match = specialMatcher.firstMatch(in: scalarBuffer, from: start) {
          if start < match.range.lowerBound {
            encodeStretch(start..<match.range.lowerBound, &ids)
          }
          ids.append(match.id)
          start = match.range.upperBound
        }
        if start < scalarBuffer.count {
          encodeStretch(start..<scalarBuffer.count, &ids)
        }
      }
    }
    return ids
  }

  /// Appends the BPE ids of one pre-tokenized piece, through the word cache.
  private func appendWord(_ bytes: [UInt8], to ids: inout [Int]) {
    if let cached = cache.lookup(bytes) {
      for id in cached { ids.append(Int(id)) }
      return
    }
    let word = bytePairEncode(bytes)
    cache.insert(bytes, word)
    for id in word { ids.append(Int(id)) }
  }

  /// Applies merges to the byte tokens of one word: repeatedly merges the adjacent pair with
  /// the lowest rank (leftmost on ties) until no pair has a merge. Words longer than 32 bytes
  /// take the heap-based path, which gives the same ids in O(n log n) instead of O(n²).
  func bytePairEncode(_ bytes: [UInt8]) -> [Int32] {
    let symbols = byteSymbols(bytes)
    return symbols.count > 32 ? mergeWithHeap(symbols) : mergeByScanning(symbols)
  }

  func byteSymbols(_ bytes: [UInt8]) -> [Int32] {
    var symbols: [Int32] = []
    symbols.reserveCapacity(bytes.count)
    for byte in bytes {
      let id = byteTokenIDs[Int(byte)]
      if id >= 0 { symbols.append(id) }
    }
    return symbols
  }

  /// Reference merge loop: scans all pairs for the lowest rank after every merge.
  func mergeByScanning(_ initial: [Int32]) -> [Int32] {
    var symbols = initial
    if symbols.count < 2 { return symbols }

    // pairRanks[i] is the rank of merging symbols[i] and symbols[i + 1] (Int32.max: none).
    var pairRanks = [Int32](repeating: .max, count: symbols.count - 1)
    for index in pairRanks.indices {
      pairRanks[index] = mergeFor(symbols[index], symbols[index + 1])?.rank ?? .max
    }
    while true {
      var best = -1
      var bestRank = Int32.max
      for (index, rank) in pairRanks.enumerated() where rank < bestRank {
        best = index
        bestRank = rank
      }
      guard best >= 0, let merge = mergeFor(symbols[best], symbols[best + 1]) else { break }

      symbols[best] = merge.mergedID
      symbols.remove(at: best + 1)
      pairRanks.remove(at: best)
      if best > 0 {
        pairRanks[best - 1] = mergeFor(symbols[best - 1], symbols[best])?.rank ?? .max
      }
      if best < pairRanks.count {
        pairRanks[best] = mergeFor(symbols[best], symbols[best + 1])?.rank ?? .max
      }
    }
    return symbols
  }

  /// Heap-based merge loop for long words. Symbols form a linked list over their original
  /// positions, and a min-heap contains candidate pairs keyed by `rank << 32 | left position`, so
  /// the pop order is lowest rank, then leftmost. Entries made stale by an earlier merge are
  /// skipped when popped: a pair is still valid when both symbols are alive and adjacent and
  /// their merge still has the entry's rank (ranks identify merges uniquely).
  func mergeWithHeap(_ initial: [Int32]) -> [Int32] {
    var symbols = initial
    let count = symbols.count
    if count < 2 { return symbols }
    var next = Array(1...count)
    next[count - 1] = -1
    var previous = Array(-1..<(count - 1))
    var alive = [Bool](repeating: true, count: count)
    var heap = MinHeap()

    func push(_ left: Int) {
      let right = next[left]
      if right >= 0, let merge = mergeFor(symbols[left], symbols[right]) {
        heap.push(UInt64(merge.rank) << 32 | UInt64(left))
      }
    }
    for index in 0..<(count - 1) {
      push(index)
    }
    while let entry = heap.pop() {
      let left = Int(entry & 0xFFFF_FFFF)
      let rank = Int32(entry >> 32)
      let right = next[left]
      guard alive[left], right >= 0, let merge = mergeFor(symbols[left], symbols[right]),
        merge.rank == rank
      else { continue }

      symbols[left] = merge.mergedID
      alive[right] = false
      next[left] = next[right]
      if next[right] >= 0 { previous[next[right]] = left }
      if previous[left] >= 0 { push(previous[left]) }
      push(left)
    }
    var result: [Int32] = []
    var index = 0
    while index >= 0 {
      result.append(symbols[index])
      index = next[index]
    }
    return result
  }

  @inline(__always)
  private func mergeFor(_ left: Int32, _ right: Int32) -> Merge? {
    merges[UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))]
  }

  // MARK: - Decoding

  /// Returns the raw bytes of the ids, concatenated. Ids outside the vocabulary are skipped.
  public func decodeBytes(_ ids: [Int]) -> [UInt8] {
    var bytes: [UInt8] = []
    for id in ids where tokenBytes.indices.contains(id) {
      bytes.append(contentsOf: tokenBytes[id])
    }
    return bytes
  }

  /// Returns the bytes of one id (empty when out of range).
  func bytes(for id: Int) -> [UInt8] {
    tokenBytes.indices.contains(id) ? tokenBytes[id] : []
  }

  /// Decodes ids to text, special tokens included. Invalid UTF-8 (for example a sequence cut
  /// in the middle of a character) becomes U+FFFD.
  public func decode(_ ids: [Int]) -> String {
    String(decoding: decodeBytes(ids), as: UTF8.self)
  }

  /// Returns a decoder that turns ids into text one at a time.
  public func streamingDecoder() -> StreamingDecoder {
    StreamingDecoder(tokenizer: self)
  }
}

/// Binary min-heap of packed `UInt64` keys.
struct MinHeap {
  private var items: [UInt64] = []

  mutating func push(_ value: UInt64) {
    items.append(value)
    var child = items.count - 1
    while child > 0 {
      let parent = (child - 1) / 2
      if items[parent] <= items[child] { break }
      items.swapAt(parent, child)
      child = parent
    }
  }

  mutating func pop() -> UInt64? {
    guard let top = items.first else { return nil }
    let last = items.removeLast()
    if !items.isEmpty {
      items[0] = last
      var parent = 0
      while true {
        let left = 2 * parent + 1
        let right = left + 1
        var smallest = parent
        if left < items.count && items[left] < items[smallest] { smallest = left }
        if right < items.count && items[right] < items[smallest] { smallest = right }
        if smallest == parent { break }
        items.swapAt(parent, smallest)
        parent = smallest
      }
    }
    return top
  }
}

/// Word → ids cache shared by concurrent `encode` calls. It stops growing at `capacity` entries.
final class WordCache: @unchecked Sendable {
  // Safety: `storage` is read and written only while `lock` is held.
  private let lock = NSLock()
  private var storage: [[UInt8]: [Int32]] = [:]
  private let capacity: Int

  init(capacity: Int) {
    self.capacity = capacity
  }

  func lookup(_ key: [UInt8]) -> [Int32]? {
    lock.lock()
    defer { lock.unlock() }
    return storage[key]
  }

  func insert(_ key: [UInt8], _ value: [Int32]) {
    lock.lock()
    defer { lock.unlock() }
    if storage.count < capacity {
      storage[key] = value
    }
  }
}

/// Finds special-token text in a scalar array: leftmost match first, longest token on ties.
struct SpecialTokenMatcher: Sendable {
  /// Candidates grouped by first scalar, each group sorted longest first.
  private let candidates: [UInt32: [(scalars: [Unicode.Scalar], id: Int)]]

  init(tokens: [(String, Int)]) {
    var grouped: [UInt32: [(scalars: [Unicode.Scalar], id: Int)]] = [:]
    for (text, id) in tokens {
      let scalars = Array(text.unicodeScalars)
      grouped[scalars[0].value, default: []].append((scalars, id))
    }
    for key in grouped.keys {
      grouped[key]!.sort { $0.scalars.count > $1.scalars.count }
    }
    candidates = grouped
  }

  func firstMatch(in text: UnsafeBufferPointer<Unicode.Scalar>, from start: Int)
    -> (range: Range<Int>, id: Int)?
  {
    if candidates.isEmpty { return nil }
    var position = start
    while position < text.count {
      if let group = candidates[text[position].value] {
        for candidate in group where matches(candidate.scalars, in: text, at: position) {
          return (position..<(position + candidate.scalars.count), candidate.id)
        }
      }
      position += 1
    }
    return nil
  }

  private func matches(
    _ token: [Unicode.Scalar], in text: UnsafeBufferPointer<Unicode.Scalar>, at position: Int
  ) -> Bool {
    if position + token.count > text.count { return false }
    for (offset, scalar) in token.enumerated() where text[position + offset] != scalar {
      return false
    }
    return true
  }
}
