import Testing
@testable import XLModels
