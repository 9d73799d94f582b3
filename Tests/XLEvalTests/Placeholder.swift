import Testing
@testable import XLEval
