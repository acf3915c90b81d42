import XCTest

final class CollectivePlaceholderTests: XCTestCase {
    func testNothingYet() {}
}
