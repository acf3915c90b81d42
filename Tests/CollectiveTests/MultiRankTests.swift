import Foundation
import XCTest

/// Runs the CollectiveCheck executable, built next to this test bundle,
/// under mpirun with several ranks (and once without a launcher), and
/// checks every rank's report. MPI traffic stays on this machine: shared
/// memory between ranks, loopback for mpirun's own control messages.
final class MultiRankTests: XCTestCase {
    /// Long enough for a slow debug build, short enough that a hang
    /// fails the test instead of blocking the suite.
    let timeout: TimeInterval = 120

    static let scalarTypes = ["Float", "Double", "Int32", "Int64"]
    static let perTypeChecks = [
        "allreduce-sum-array", "allreduce-max-array", "allreduce-min-array",
        "allreduce-sum-buffer", "broadcast-array", "broadcast-buffer",
        "allgather", "allgatherVariable", "allgatherVariable-rank0-empty",
        "allgather-into", "allgatherVariable-into",
        "allgatherVariableInPlace", "alltoallVariable",
        "alltoallVariable-large", "allgatherVariable-large",
        "startAllreduce-sum", "startAllreduce-max",
    ]

    /// The names CollectiveCheck reports, in its order.
    static func checkNames(size: Int, large: Int, expectMPI: Bool?)
        -> [String]
    {
        var names = scalarTypes.flatMap { type in
            perTypeChecks.map { "\($0) \(type)" }
        }
        names += [
            "broadcast-bytes", "broadcast-bytes-empty", "barrier",
            "shared-segments", "large-allreduce-sum Float x\(large)",
            "refuse-root-too-large",
            "refuse-root-negative", "refuse-unsupported-type",
            "refuse-counts-not-one-per-rank", "refuse-own-count-mismatch",
            "refuse-result-too-small",
        ]
        if size > 1 {
            names += [
                "refuse-allgather-unequal-counts",
                "refuse-broadcast-unequal-counts",
            ]
        }
        names.append("barrier-after-refusals")
        if expectMPI != nil { names.append("after-finalize") }
        return names
    }

    // MARK: Tests

    func testTwoRanks() throws {
        try checkAllRanks(size: 2, large: 4_000_000)
    }

    func testThreeRanks() throws {
        try checkAllRanks(size: 3, large: 4_000_000)
    }

    /// A piece limit of 7 elements sends every buffer in several MPI
    /// calls, as buffers beyond Int32.max elements would be, and makes
    /// allgatherVariable go in rounds.
    func testThreeRanksInSmallPieces() throws {
        try checkAllRanks(
            size: 3, large: 1000,
            environment: ["HEADLINE_COLLECTIVE_MAX_CHUNK": "7"])
    }

    /// HEADLINE_SHARED_MEMORY=0 on the ranks: no shared segments (the
    /// check expects none), everything else as before.
    func testSharedMemoryTurnedOff() throws {
        try checkAllRanks(
            size: 2, large: 1000,
            environment: ["HEADLINE_SHARED_MEMORY": "0"])
    }

    /// A real failure inside MPI: a broadcast into a buffer too short
    /// for it. The receiving rank must get a CollectiveError that names
    /// MPI_Bcast and carries MPI's own text for the code.
    func testRealMPIErrorBecomesCollectiveError() throws {
        let result = try runUnderMPI(size: 2, arguments: ["--mpi-error"])
        XCTAssertEqual(result.status, 0, result.output)
        let lines = result.lines
        XCTAssertTrue(
            lines.contains("rank 1/2 ok mpi-error-truncated-broadcast"),
            result.output)
        let error = lines.first { $0.hasPrefix("rank 1/2 error: ") }
        XCTAssertNotNil(error, result.output)
        XCTAssertTrue(
            error?.hasPrefix("rank 1/2 error: MPI_Bcast failed with MPI error ")
                ?? false, result.output)
        // OpenMPI says "message truncated", MPICH "Message truncated".
        XCTAssertTrue(
            error?.lowercased().contains("truncated") ?? false,
            result.output)
    }

    /// abort(code:) on rank 0 ends every rank, and mpirun exits with the
    /// code.
    func testAbortEndsTheWholeJob() throws {
        let result = try runUnderMPI(size: 2, arguments: ["--abort", "3"])
        XCTAssertEqual(result.status, 3, result.output)
        XCTAssertTrue(
            result.lines.contains("rank 0/2 aborting with 3"), result.output)
        XCTAssertFalse(result.output.contains("survived"), result.output)
    }

    /// Without a launcher: a world of one, no MPI, everything local.
    func testPlainProcessIsWorldOfOne() throws {
        let result = try run(
            try checkExecutable(),
            arguments: ["--large", "1000", "--expect-mpi", "no"],
            environment: [:])
        try assertReports(result, size: 1, large: 1000, expectMPI: false)
        let header = "rank 0/1 world distributed=false "
        XCTAssertTrue(
            result.lines.contains { $0.hasPrefix(header) }, result.output)
        // Without MPI, abort is a plain exit with the code.
        let aborted = try run(
            try checkExecutable(), arguments: ["--abort", "4"],
            environment: [:])
        XCTAssertEqual(aborted.status, 4, aborted.output)
        XCTAssertFalse(aborted.output.contains("MPI_ABORT"), aborted.output)
    }

    /// HEADLINE_FORCE_MPI=1 without a launcher: OpenMPI's singleton
    /// init, a world of one that does use MPI, which shows in the
    /// refusal after finalising and in abort going through MPI_Abort.
    func testForcedSingletonUsesMPI() throws {
        let forced = ["HEADLINE_FORCE_MPI": "1"]
        let result = try run(
            try checkExecutable(),
            arguments: ["--large", "1000", "--expect-mpi", "yes"],
            environment: forced)
        try assertReports(result, size: 1, large: 1000, expectMPI: true)
        let aborted = try run(
            try checkExecutable(), arguments: ["--abort", "5"],
            environment: forced)
        XCTAssertEqual(aborted.status, 5, aborted.output)
        // MPI_Abort makes OpenMPI's runtime print a notice; a plain exit
        // prints nothing. OpenMPI 4.1.4 sometimes loses a race while
        // sending that notice and prints an ORTE_ERROR_LOG line instead.
        XCTAssertTrue(
            aborted.output.contains("MPI_ABORT")
                || aborted.output.contains("ORTE_ERROR_LOG"),
            aborted.output)
    }

    // MARK: Helpers

    private func checkAllRanks(
        size: Int, large: Int, environment: [String: String] = [:]
    ) throws {
        let result = try runUnderMPI(
            size: size,
            arguments: ["--large", "\(large)", "--expect-mpi", "yes"],
            environment: environment)
        try assertReports(result, size: size, large: large, expectMPI: true)
        for rank in 0..<size {
            let header = "rank \(rank)/\(size) world distributed=true "
            XCTAssertTrue(
                result.lines.contains { $0.hasPrefix(header) },
                "missing \"\(header)\" in:\n\(result.output)")
        }
    }

    /// Every rank reported every check as ok, in full, and nothing failed.
    private func assertReports(
        _ result: RunResult, size: Int, large: Int, expectMPI: Bool?
    ) throws {
        XCTAssertFalse(result.timedOut, "timed out:\n\(result.output)")
        XCTAssertEqual(result.status, 0, result.output)
        let lines = Set(result.lines)
        let names = Self.checkNames(
            size: size, large: large, expectMPI: expectMPI)
        for rank in 0..<size {
            let prefix = "rank \(rank)/\(size)"
            for name in names {
                XCTAssertTrue(
                    lines.contains("\(prefix) ok \(name)"),
                    "missing \"\(prefix) ok \(name)\" in:\n\(result.output)")
            }
            XCTAssertTrue(
                lines.contains(
                    "\(prefix) done: \(names.count) checks, 0 failed"),
                "missing summary of \(prefix) in:\n\(result.output)")
        }
        XCTAssertFalse(result.output.contains(" FAIL "), result.output)
    }

    struct RunResult {
        let status: Int32
        let output: String
        let timedOut: Bool
        var lines: [String] {
            output.split(separator: "\n").map(String.init)
        }
    }

    private func runUnderMPI(
        size: Int, arguments: [String],
        environment: [String: String] = [:]
    ) throws -> RunResult {
        let mpirun = try XCTUnwrap(
            findOnPath("mpirun"),
            "mpirun is not on PATH; install OpenMPI (scripts/setup.sh)")
        var launcherArguments = [
            "--oversubscribe", "--bind-to", "none", "-np", "\(size)",
        ]
        // Hand the test's variables to the ranks explicitly.
        for name in environment.keys.sorted() {
            launcherArguments += ["-x", name]
        }
        var fullEnvironment = environment
        if getuid() == 0 {
            // OpenMPI refuses to start as root without both of these.
            fullEnvironment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            fullEnvironment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        }
        return try run(
            mpirun,
            arguments: launcherArguments + [try checkExecutable().path]
                + arguments,
            environment: fullEnvironment)
    }

    /// CollectiveCheck sits in the build directory, beside this bundle.
    private func checkExecutable() throws -> URL {
        var directories: [URL] = [
            Bundle(for: Self.self).bundleURL.deletingLastPathComponent()
        ]
        if let main = Bundle.main.executableURL {
            directories.append(main.deletingLastPathComponent())
        }
        for directory in directories {
            let candidate = directory.appendingPathComponent("CollectiveCheck")
            if FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        let searched = directories.map(\.path).joined(separator: ", ")
        XCTFail("CollectiveCheck is not built in \(searched); run swift build")
        throw CocoaError(.fileNoSuchFile)
    }

    private func findOnPath(_ name: String) -> URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(directory))
                .appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        return nil
    }

    /// Runs a program with this process's environment, less anything
    /// that would make the child think a launcher started it, plus
    /// `environment`; stdout and stderr together, killed at the timeout.
    private func run(
        _ executable: URL, arguments: [String],
        environment: [String: String]
    ) throws -> RunResult {
        var childEnvironment = ProcessInfo.processInfo.environment
        for name in [
            "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
            "SLURM_NTASKS", "SLURM_PROCID", "HEADLINE_FORCE_MPI",
            "HEADLINE_COLLECTIVE_MAX_CHUNK",
        ] {
            childEnvironment[name] = nil
        }
        // Keep OpenMPI on this machine: shared memory between ranks,
        // loopback for its control channel (also for a singleton).
        childEnvironment["OMPI_MCA_btl"] = "self,vader"
        childEnvironment["OMPI_MCA_oob_tcp_if_include"] = "lo"
        childEnvironment.merge(environment) { $1 }

        let outputURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("collective-check-\(UUID().uuidString)")
        guard
            FileManager.default.createFile(
                atPath: outputURL.path, contents: nil)
        else {
            throw CocoaError(.fileWriteUnknown)
        }
        defer { try? FileManager.default.removeItem(at: outputURL) }
        let output = try FileHandle(forWritingTo: outputURL)
        defer { try? output.close() }

        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = childEnvironment
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()

        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let timedOut = process.isRunning
        if timedOut {
            // mpirun passes SIGTERM on to its ranks.
            process.terminate()
            let grace = Date().addingTimeInterval(5)
            while process.isRunning && Date() < grace {
                Thread.sleep(forTimeInterval: 0.05)
            }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
            }
        }
        process.waitUntilExit()
        let text = String(
            decoding: (try? Data(contentsOf: outputURL)) ?? Data(),
            as: UTF8.self)
        if timedOut {
            XCTFail("\(executable.lastPathComponent) ran past \(timeout) s")
        }
        return RunResult(
            status: process.terminationStatus, output: text,
            timedOut: timedOut)
    }
}
