import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file.
///
/// The mapping lives as long as the object; `deinit` unmaps it. An empty file has no mapping
/// (`base` is nil, `count` is 0). Reads go through bounds-checked helpers that use unaligned
/// loads, because neither safetensors nor GGUF guarantees alignment of every field.
final class MappedFile: @unchecked Sendable {
  let path: String
  let base: UnsafeRawPointer?
  let count: Int

  init(url: URL) throws {
    path = url.path
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else {
      let code = errno
      if code == ENOENT { throw FormatError.fileNotFound(path: path) }
      throw FormatError.ioFailed(path: path, detail: "open failed: \(String(cString: strerror(code)))")
    }
    defer { close(descriptor) }

    var status = stat()
    guard fstat(descriptor, &status) == 0 else {
      throw FormatError.ioFailed(path: path, detail: "stat failed: \(String(cString: strerror(errno)))")
    }
    guard (status.st_mode & S_IFMT) == S_IFREG else {
      throw FormatError.ioFailed(path: path, detail: "not a regular file")
    }
    count = Int(status.st_size)
    if count == 0 {
      base = nil
      return
    }
    guard let pointer = mmap(nil, count, PROT_READ, MAP_PRIVATE, descriptor, 0),
      pointer != UnsafeMutableRawPointer(bitPattern: -1)
    else {
      throw FormatError.ioFailed(path: path, detail: "mmap failed: \(String(cString: strerror(errno)))")
    }
    base = UnsafeRawPointer(pointer)
  }

  deinit {
    if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
  }

  /// Bytes `range` of the file; the range must lie inside the file (checked by the caller).
  func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "range \(range) outside file")
    guard let base, !range.isEmpty else { return UnsafeRawBufferPointer(start: nil, count: 0) }
    return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
  }

  /// The system's page size in bytes, the unit that `dropPages` releases.
  private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

  /// Drops the whole pages inside `range` from this process's memory once a tensor has been
  /// copied out of them. The mapping stays valid: a later read faults the pages back in from
  /// the file. Without this, the pages of every tensor read stay resident while the map lives,
  /// so loading a model counted its file twice, once mapped and once copied.
  func dropPages(_ range: Range<Int>) {
    guard let base, !range.isEmpty else { return }
    let page = Self.pageSize
    let first = (range.lowerBound + page - 1) / page * page
    let last = range.upperBound / page * page
    guard last > first else { return }
    // Advice only: a failure leaves the pages resident, which is what happens without it.
    _ = madvise(UnsafeMutableRawPointer(mutating: base + first), last - first, Int32(MADV_DONTNEED))
  }

  /// Little-endian integer at `offset`; the caller checks `offset + size <= count`.
  func load<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
    precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "read past end")
    return T(littleEndian: base!.loadUnaligned(fromByteOffset: offset, as: T.self))
  }
}
