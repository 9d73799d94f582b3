import Testing
@testable import XLTraining
