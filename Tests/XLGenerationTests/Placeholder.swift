import Testing
@testable import XLGeneration
