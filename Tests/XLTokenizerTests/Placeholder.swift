import Testing
@testable import XLTokenizer
