import XCTest

@testable import Launcher

/// The deal of a global batch's rows to the ranks, by length.
final class BatchShardsTests: XCTestCase {
    /// Rows of T = 10 ids with `lengths[r]` ids after the front padding.
    private func data(_ lengths: [Int]) -> TrainingData {
        let t = 10
        var ids: [Int32] = []
        for length in lengths {
            ids += Array(repeating: 0, count: t - length)
            ids += (0..<length).map { Int32(1 + $0) }
        }
        return TrainingData(
            rows: lengths.count, sequenceLength: t, auxFeatures: 1, ids: ids,
            aux: Array(repeating: 0, count: lengths.count),
            labels: Array(repeating: 0, count: lengths.count))
    }

    private func deal(
        _ shards: inout BatchShards, start: Int, count: Int, order: [Int],
        size: Int
    ) -> [[Int]] {
        (0..<size).map { rank in
            var rows: [Int] = []
            shards.forEachRow(
                start: start, count: count, order: order, rank: rank,
                size: size
            ) { rows.append($0) }
            return rows
        }
    }

    func testEveryRowOnceAndNoRankOverItsShare() {
        var rng = SeededGenerator(seed: 3)
        let lengths = (0..<200).map { _ in Int(rng.next() % 11) }
        let training = data(lengths)
        let order = epochOrder(rows: 200, epoch: 0, seed: 7, shuffle: true)
        for size in 1...5 {
            for (start, count) in [(0, 64), (64, 63), (190, 10), (7, 1)] {
                var shards = BatchShards(training, globalBatch: 64)
                let dealt = deal(
                    &shards, start: start, count: count, order: order,
                    size: size)
                XCTAssertEqual(
                    dealt.flatMap { $0 }.sorted(),
                    order[start..<(start + count)].sorted(),
                    "size \(size), batch at \(start) of \(count)")
                let share = (count + size - 1) / size
                for (rank, rows) in dealt.enumerated() {
                    XCTAssertLessThanOrEqual(
                        rows.count, share, "rank \(rank) of \(size)")
                    // In the batch's order within a rank.
                    let places = rows.map { row in
                        order[start..<(start + count)].firstIndex(of: row)!
                    }
                    XCTAssertEqual(places, places.sorted())
                }
            }
        }
    }

    func testWorldOfOneKeepsTheBatchOrder() {
        let training = data([3, 9, 1, 0, 10, 4])
        var shards = BatchShards(training, globalBatch: 6)
        let order = [5, 2, 0, 4, 1, 3]
        XCTAssertEqual(
            deal(&shards, start: 0, count: 6, order: order, size: 1),
            [order])
    }

    /// Contiguous halves of this batch hold 4 and 36 tokens; dealt, 20
    /// each.
    func testTokensAreEvenedAcrossRanks() {
        let lengths = [1, 1, 1, 1, 9, 9, 9, 9]
        let training = data(lengths)
        var shards = BatchShards(training, globalBatch: 8)
        let dealt = deal(
            &shards, start: 0, count: 8, order: Array(0..<8), size: 2)
        let tokens = dealt.map { $0.map { lengths[$0] }.reduce(0, +) }
        XCTAssertEqual(tokens, [20, 20])
        XCTAssertEqual(dealt.map(\.count), [4, 4])
    }
}
