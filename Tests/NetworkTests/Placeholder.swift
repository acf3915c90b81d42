import XCTest

final class NetworkPlaceholderTests: XCTestCase {
    func testNothingYet() {}
}
