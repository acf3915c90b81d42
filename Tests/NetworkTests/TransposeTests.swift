import XCTest

@testable import Network

/// `Transpose.run` against the definition out[j, i] = a[i, j], on sizes
/// around the tile (16) and the model's own (R: 32 × 128, K: 512 × 128),
/// with leading dimensions wider than the matrices. The padding of A holds
/// NaN and that of the output a sentinel, so a read or a write outside the
/// matrices shows. The comparison is exact: a transpose only moves values.
final class TransposeTests: XCTestCase {
    func testEveryShapeAroundTheTile() {
        let sides = [0, 1, 5, 15, 16, 17, 31, 33]
        for rows in sides {
            for cols in sides {
                check(rows: rows, cols: cols, lda: cols + 3, ldo: rows + 2)
                check(rows: rows, cols: cols, lda: cols, ldo: rows)
            }
        }
    }

    func testTheModelsShapes() {
        check(rows: 32, cols: 128, lda: 128, ldo: 32)
        check(rows: 512, cols: 128, lda: 128, ldo: 512)
        check(rows: 6, cols: 40, lda: 40, ldo: 6)
    }

    private func check(rows: Int, cols: Int, lda: Int, ldo: Int) {
        let sentinel: Float = -12345
        var a = [Float](repeating: .nan, count: max(rows * lda, 1))
        for i in 0..<rows {
            for j in 0..<cols { a[i * lda + j] = Float(i * 1000 + j) + 0.5 }
        }
        var out = [Float](repeating: sentinel, count: max(cols * ldo, 1))
        a.withUnsafeBufferPointer { a in
            out.withUnsafeMutableBufferPointer { o in
                Transpose.run(
                    rows: rows, cols: cols, a.baseAddress!, lda: lda,
                    o.baseAddress!, ldo: ldo)
            }
        }
        for j in 0..<cols {
            for i in 0..<ldo {
                let got = out[j * ldo + i]
                let want = i < rows ? a[i * lda + j] : sentinel
                guard got == want else {
                    XCTFail(
                        "\(rows)x\(cols) (lda \(lda), ldo \(ldo)): "
                            + "out[\(j), \(i)] is \(got), expected \(want)")
                    return
                }
            }
        }
    }
}
