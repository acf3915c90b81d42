import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A 64-bit integer in a shared segment that every rank on the machine may
/// read and change at any time, for hand-offs finer than `synchronize()`:
/// handing out pieces of work, and saying when memory is ready.
///
/// The orderings make it a hand-off of memory as well: what a rank wrote
/// before `publish` or `add` is visible to a rank whose `value`, `add` or
/// `wait` then sees that store (release, then acquire). Memory handed over
/// this way may lie in any rank's segment, and be written by any rank
/// that the hand-off names, which is how a counter extends the rule that
/// a rank writes only its own segment.
public struct SharedCounter: @unchecked Sendable {
    private let cell: UnsafeMutablePointer<Atomic<Int64>>

    init(_ address: UnsafeMutableRawPointer) {
        cell = address.bindMemory(to: Atomic<Int64>.self, capacity: 1)
    }

    /// The current value.
    public var value: Int64 { cell.pointee.load(ordering: .acquiring) }

    /// Sets the value.
    public func publish(_ newValue: Int64) {
        cell.pointee.store(newValue, ordering: .releasing)
    }

    /// Adds `amount` and returns the value before, as one step that no
    /// other rank's `add` can split: n ranks adding 1 at once get n
    /// different values.
    @discardableResult
    public func add(_ amount: Int64) -> Int64 {
        cell.pointee.wrappingAdd(amount, ordering: .acquiringAndReleasing)
            .oldValue
    }

    /// Waits until `condition` holds for the value, and returns that value.
    ///
    /// It spins for a short while, then gives up the processor between
    /// looks, so that ranks oversubscribed on fewer cores still let the
    /// rank they wait for run. There is no timeout: like a barrier, it
    /// relies on a failing rank ending the job (see `Communicator.abort`).
    @discardableResult
    public func wait(until condition: (Int64) -> Bool) -> Int64 {
        var looks = 0
        while true {
            let now = value
            if condition(now) { return now }
            looks += 1
            if looks > 2000 { sched_yield() }
        }
    }
}

extension SharedSegments {
    /// The counter at byte `offset` (a multiple of 8) of rank `rank`'s
    /// segment. Counters that different ranks change often should lie on
    /// different 64-byte lines, or every change moves the others' line too.
    /// A counter holds what the segment's memory held until someone
    /// publishes a first value; `synchronize()` after that makes it known.
    public func counter(_ rank: Int, at offset: Int) -> SharedCounter {
        precondition(
            offset >= 0 && offset + 8 <= capacity && offset % 8 == 0,
            "a counter outside the segment or misaligned")
        return SharedCounter(bases[rank] + offset)
    }
}
