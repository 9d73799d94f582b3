import Testing
@testable import XLFormats
