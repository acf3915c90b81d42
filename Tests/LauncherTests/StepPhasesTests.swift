import Foundation
import XCTest

@testable import Launcher

/// `StepPhases` on a real clock: each phase gets the time since the last
/// mark, the phases add up to the steps, and a reset forgets them. The
/// sleeps are long against the clock's cost (tens of nanoseconds), and
/// the bounds below only assume that a sleep lasts at least as long as
/// asked and that nothing here takes 500 ms.
final class StepPhasesTests: XCTestCase {
    func testPhasesGetTheTimeSinceTheLastMark() {
        var phases = StepPhases()
        for _ in 0..<2 {
            phases.begin()
            usleep(20_000)
            phases.end(.forward)
            phases.end(.backward)
            usleep(10_000)
            phases.end(.update)
            phases.stepDone()
        }
        XCTAssertEqual(phases.steps, 2)
        let ms = phases.millisecondsPerStep
        let forward = StepPhases.Phase.forward.rawValue
        let update = StepPhases.Phase.update.rawValue
        XCTAssertGreaterThanOrEqual(ms[forward], 20)
        XCTAssertLessThan(ms[forward], 500)
        XCTAssertGreaterThanOrEqual(ms[update], 10)
        XCTAssertLessThan(ms[update], 500)
        for phase in StepPhases.Phase.allCases
        where phase != .forward && phase != .update {
            XCTAssertLessThan(ms[phase.rawValue], 5, phase.name)
        }
        let line = StepPhases.line(rank: 3, ms[...])
        XCTAssertTrue(
            line.hasPrefix("phases, ms/step (rank 3): agreement "), line)
        XCTAssertTrue(line.contains(", rows' product "), line)
        XCTAssertTrue(
            line.hasSuffix(String(format: " = %.3f", ms.reduce(0, +))), line)

        phases.reset()
        XCTAssertEqual(phases.steps, 0)
        XCTAssertEqual(phases.millisecondsPerStep, ms.map { _ in 0 })
    }
}
