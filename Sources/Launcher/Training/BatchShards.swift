/// Which rows of each global batch each rank trains on, dealt by length.
///
/// A rank's step costs about in proportion to the tokens of its rows (the
/// recurrence skips the front padding, forward and back), and every step
/// waits for the slowest rank. Contiguous shards of shuffled headlines
/// differ by about 5% in tokens on the bundled data; dealing the rows out
/// longest first, snake-wise (ranks 0, 1, …, n−1, then n−1, …, 0, …),
/// evens them to about 1%. No rank gets more than ⌈count / n⌉ rows. The
/// deal depends only on the data and the batch, so every rank computes
/// the same one; the gradient, a sum over the whole batch, does not depend
/// on it. A world of one takes the batch as it is.
///
/// Its buffers are sized once: dealing allocates nothing.
struct BatchShards {
    /// Ids after the front padding, per training row.
    private let tokens: [Int32]
    /// Scratch for one batch: its positions, longest row first.
    private var byLength: [Int32]
    /// Scratch for one batch: the rank of each position.
    private var owner: [Int32]

    init(_ data: TrainingData, globalBatch: Int) {
        let t = data.sequenceLength
        var tokens = [Int32](repeating: 0, count: data.rows)
        for r in 0..<data.rows {
            var lead = 0
            while lead < t, data.ids[r * t + lead] == 0 { lead += 1 }
            tokens[r] = Int32(t - lead)
        }
        self.tokens = tokens
        byLength = [Int32](repeating: 0, count: globalBatch)
        owner = [Int32](repeating: 0, count: globalBatch)
    }

    /// Calls `body` with each training row of positions
    /// `start..<(start + count)` of `order` that `rank` of `size` trains
    /// on, in the batch's order.
    mutating func forEachRow(
        start: Int, count: Int, order: [Int], rank: Int, size: Int,
        _ body: (Int) -> Void
    ) {
        precondition(count <= byLength.count)
        if size == 1 {
            for j in 0..<count { body(order[start + j]) }
            return
        }
        // Insertion sort, longest first, ties by position: a global batch
        // is small, and the generic sort allocates in a debug build.
        for j in 0..<count {
            let length = tokens[order[start + j]]
            var k = j
            while k > 0, tokens[order[start + Int(byLength[k - 1])]] < length {
                byLength[k] = byLength[k - 1]
                k -= 1
            }
            byLength[k] = Int32(j)
        }
        for k in 0..<count {
            let round = k / size, seat = k % size
            let dealt = round % 2 == 0 ? seat : size - 1 - seat
            owner[Int(byLength[k])] = Int32(dealt)
        }
        for j in 0..<count where owner[j] == Int32(rank) {
            body(order[start + j])
        }
    }
}
