import Foundation
import Network
import XCTest

/// Helpers for the end-to-end tests: they run the built `headline-trainer`
/// as a subprocess (alone, or under mpirun on this machine only), on
/// folders each test writes into its own temporary directory.

/// What one run of the trainer (or of mpirun) left behind.
struct CLIResult {
    /// Exit status, or the signal number when `signaled`.
    let status: Int32
    /// True when the process ended by a signal (a crash or the timeout).
    let signaled: Bool
    let timedOut: Bool
    let stdout: String
    let stderr: String
    let command: String

    /// Both streams, for counting messages wherever they went.
    var output: String { stdout + stderr }

    /// Everything a failed assertion should show.
    var transcript: String {
        "$ \(command)\nstatus \(status)\(signaled ? " (signal)" : "")"
            + "\(timedOut ? " (timed out)" : "")\n--- stdout:\n\(stdout)"
            + "\n--- stderr:\n\(stderr)"
    }

    var stdoutLines: [String] {
        stdout.split(separator: "\n", omittingEmptySubsequences: false)
            .map(String.init)
    }
}

/// Occurrences of `needle` in `text` (non-overlapping).
func occurrences(of needle: String, in text: String) -> Int {
    guard !needle.isEmpty else { return 0 }
    return text.components(separatedBy: needle).count - 1
}

enum CLI {
    /// A hang fails the test after this long instead of blocking the suite.
    /// Every run here trains a tiny model for a few steps (well under a
    /// second); mpirun adds about a second to start.
    static let timeout: TimeInterval = 60

    /// The `headline-trainer` executable, built beside this test bundle.
    static func executable(
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        var directories = [
            Bundle(for: CLIMarker.self).bundleURL.deletingLastPathComponent()
        ]
        if let main = Bundle.main.executableURL {
            directories.append(main.deletingLastPathComponent())
        }
        for directory in directories {
            let candidate = directory.appendingPathComponent("headline-trainer")
            if FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate.path
            }
        }
        let searched = directories.map(\.path).joined(separator: ", ")
        XCTFail(
            "headline-trainer is not built in \(searched); run "
                + "swift build --build-tests", file: file, line: line)
        throw CocoaError(.fileNoSuchFile)
    }

    static func mpirun(file: StaticString = #filePath, line: UInt = #line)
        throws -> String
    {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/mpirun"
            if FileManager.default.isExecutableFile(atPath: candidate) {
                return candidate
            }
        }
        XCTFail(
            "mpirun is not on PATH; install OpenMPI (scripts/setup.sh)",
            file: file, line: line)
        throw CocoaError(.fileNoSuchFile)
    }

    /// Runs `headline-trainer arguments...` as a plain process;
    /// `environment` adds to the child's (the test-only fault variables).
    static func run(
        _ arguments: [String], in directory: String? = nil,
        environment: [String: String] = [:],
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> CLIResult {
        try start(
            arguments, in: directory, environment: environment, file: file,
            line: line
        ).finish(file: file, line: line)
    }

    /// Runs `headline-trainer arguments...` on `ranks` ranks under mpirun,
    /// on this machine: shared memory between the ranks, loopback for
    /// mpirun's control channel. mpirun passes its environment on to the
    /// ranks it starts here.
    static func runMPI(
        ranks: Int, _ arguments: [String], in directory: String? = nil,
        environment: [String: String] = [:],
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> CLIResult {
        try startMPI(
            ranks: ranks, arguments, in: directory, environment: environment,
            file: file, line: line
        ).finish(file: file, line: line)
    }

    /// Runs any program (a launch script, say) with the same environment
    /// rules and timeout as the trainer.
    static func runProgram(
        _ program: String, _ arguments: [String], in directory: String? = nil,
        environment: [String: String] = [:],
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> CLIResult {
        try RunningCLI(
            program, arguments, in: directory, environment: environment
        ).finish(file: file, line: line)
    }

    /// Starts `headline-trainer arguments...` without waiting for it.
    static func start(
        _ arguments: [String], in directory: String? = nil,
        environment: [String: String] = [:],
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> RunningCLI {
        try RunningCLI(
            try executable(file: file, line: line), arguments,
            in: directory, environment: environment)
    }

    /// Starts mpirun with `ranks` ranks without waiting for it.
    static func startMPI(
        ranks: Int, _ arguments: [String], in directory: String? = nil,
        environment: [String: String] = [:],
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> RunningCLI {
        let launcher = try mpirun(file: file, line: line)
        let trainer = try executable(file: file, line: line)
        return try RunningCLI(
            launcher,
            [
                "--oversubscribe", "--bind-to", "none", "-np", "\(ranks)",
                trainer,
            ]
                + arguments, in: directory, environment: environment)
    }

    /// The child's environment: ours, less anything that would make a
    /// plain child think a launcher started it, with OpenMPI kept on this
    /// machine.
    static func childEnvironment() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for name in environment.keys
        where name.hasPrefix("OMPI_") || name.hasPrefix("PMIX_")
            || name.hasPrefix("PMI_") || name.hasPrefix("SLURM_")
            || name.hasPrefix("HEADLINE_")
        {
            environment[name] = nil
        }
        environment["OMPI_MCA_btl"] = "self,vader"
        environment["OMPI_MCA_oob_tcp_if_include"] = "lo"
        if getuid() == 0 {
            // OpenMPI refuses to start as root without both of these.
            environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        }
        return environment
    }

}

/// A started run of the trainer or of mpirun, which a test may signal
/// while it runs and then waits for.
final class RunningCLI {
    let process = Process()
    let started = Date()
    private let scratch: String
    private let out: FileHandle
    private let err: FileHandle
    private let command: String

    init(
        _ executable: String, _ arguments: [String], in directory: String?,
        environment: [String: String]
    ) throws {
        scratch = NSTemporaryDirectory() + "launcher-tests-io-\(UUID())"
        try FileManager.default.createDirectory(
            atPath: scratch, withIntermediateDirectories: true)
        for path in [scratch + "/stdout", scratch + "/stderr"] {
            guard FileManager.default.createFile(atPath: path, contents: nil)
            else { throw CocoaError(.fileWriteUnknown) }
        }
        // Files, not pipes: the child is never blocked on a full pipe, and
        // its standard output is not a terminal.
        out = try XCTUnwrap(FileHandle(forWritingAtPath: scratch + "/stdout"))
        err = try XCTUnwrap(FileHandle(forWritingAtPath: scratch + "/stderr"))
        command = ([executable] + arguments).joined(separator: " ")
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = CLI.childEnvironment().merging(
            environment, uniquingKeysWith: { _, new in new })
        // Without a folder of its own the child runs in the scratch folder,
        // so a default output (headline-model/) never lands in the
        // checkout, where it would replace a user's trained model.
        process.currentDirectoryURL = URL(fileURLWithPath: directory ?? scratch)
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        try process.run()
    }

    deinit {
        try? out.close()
        try? err.close()
        try? FileManager.default.removeItem(atPath: scratch)
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits until `condition` holds or the process ends, at most
    /// `seconds`; returns whether it holds.
    func wait(
        upTo seconds: TimeInterval, for condition: () -> Bool
    ) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() && process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        return condition()
    }

    /// Waits for the end (killing a run that passes `CLI.timeout`) and
    /// collects what it printed.
    func finish(file: StaticString = #filePath, line: UInt = #line)
        -> CLIResult
    {
        let deadline = started.addingTimeInterval(CLI.timeout)
        while process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        let timedOut = process.isRunning
        if timedOut {
            // mpirun passes SIGTERM on to its ranks; what is still alive
            // after a grace period gets SIGKILL, with the process group
            // the child was started in (Foundation starts it in its own).
            kill(pid, SIGTERM)
            let grace = Date().addingTimeInterval(5)
            while process.isRunning && Date() < grace {
                Thread.sleep(forTimeInterval: 0.05)
            }
            if process.isRunning { kill(-pid, SIGKILL) }
        }
        process.waitUntilExit()
        let result = CLIResult(
            status: process.terminationStatus,
            signaled: process.terminationReason == .uncaughtSignal,
            timedOut: timedOut,
            stdout: (try? String(
                contentsOfFile: scratch + "/stdout", encoding: .utf8)) ?? "",
            stderr: (try? String(
                contentsOfFile: scratch + "/stderr", encoding: .utf8)) ?? "",
            command: command)
        if timedOut {
            XCTFail(
                "ran past \(CLI.timeout) s:\n\(result.transcript)",
                file: file, line: line)
        }
        return result
    }
}

/// A class of this module, to find the test bundle.
private final class CLIMarker {}

// MARK: Files

/// The Keras fixture folders (tiny, small, saturated) of NetworkTests,
/// found from this source file, so a fresh clone needs nothing else.
enum Fixtures {
    static let names = ["tiny", "small", "saturated"]

    static func folder(_ name: String) throws -> String {
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // LauncherTests
            .deletingLastPathComponent()  // Tests
            .appendingPathComponent("NetworkTests/Fixtures/\(name)").path
        var isDirectory: ObjCBool = false
        guard
            FileManager.default.fileExists(
                atPath: root + "/weights.safetensors", isDirectory: &isDirectory
            ),
            !isDirectory.boolValue
        else {
            XCTFail("the Keras fixture folder \(root) is missing")
            throw CocoaError(.fileNoSuchFile)
        }
        return root
    }

    /// `fixture.json`'s "config" object (V, E, T, U, A, H, B, seed).
    static func config(_ name: String) throws -> [String: Int] {
        let json = try readJSONObject(try folder(name) + "/fixture.json")
        return try XCTUnwrap(json["config"] as? [String: Int])
    }
}

/// A fresh directory, removed when the test ends.
func temporaryDirectory(
    for test: XCTestCase, name: String = "launcher-tests"
) throws -> String {
    let path = NSTemporaryDirectory() + "\(name)-\(getpid())-\(UUID())"
    try FileManager.default.createDirectory(
        atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

func readJSONObject(_ path: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return try XCTUnwrap(
        try JSONSerialization.jsonObject(with: data) as? [String: Any],
        "\(path) is not a JSON object")
}

/// A small deterministic generator, so every test's data is the same on
/// every run.
struct TestRandom {
    var state: UInt64

    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        var z = state
        z = (z ^ (z >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        return z ^ (z >> 33)
    }

    /// Uniform in 0..<n.
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// Uniform in [-1, 1).
    mutating func float() -> Float {
        Float(next() >> 40) / Float(1 << 23) - 1
    }
}

/// A data folder for `train`: token ids [n, t] in 0..<vocabulary, aux
/// [n, a], labels [n] of 0 and 1 (or `labels` when given).
struct DataSpec {
    var rows: Int
    var sequenceLength = 5
    var auxFeatures = 3
    var vocabulary = 40
    var seed: UInt64 = 7
    var labels: [Float]?

    /// Writes main_input.npy, aux_input.npy and labels.npy into `folder`
    /// (created when missing).
    @discardableResult
    func write(to folder: String) throws -> String {
        try FileManager.default.createDirectory(
            atPath: folder, withIntermediateDirectories: true)
        var random = TestRandom(seed: seed)
        let ids = (0..<(rows * sequenceLength)).map { _ in
            Int32(random.int(vocabulary))
        }
        let aux = (0..<(rows * auxFeatures)).map { _ in random.float() }
        let labelValues =
            labels
            ?? (0..<rows).map { _ in
                Float(random.int(2))
            }
        try NPY.write(
            HostArray(shape: [rows, sequenceLength], int32s: ids),
            to: folder + "/main_input.npy")
        try NPY.write(
            HostArray(shape: [rows, auxFeatures], floats: aux),
            to: folder + "/aux_input.npy")
        try NPY.write(
            HostArray(shape: [labelValues.count], floats: labelValues),
            to: folder + "/labels.npy")
        return folder
    }
}

/// Model sizes small enough that a debug build trains in milliseconds.
func smallModelOptions(vocabulary: Int = 40) -> [String] {
    [
        "--vocab-size", "\(vocabulary)", "--embedding-dim", "6",
        "--lstm-units", "4", "--dense-units", "5",
    ]
}

/// Copies the input files of a fixture folder into `destination`.
func copyFixtureInputs(_ name: String, to destination: String) throws {
    let source = try Fixtures.folder(name)
    try FileManager.default.createDirectory(
        atPath: destination, withIntermediateDirectories: true)
    for file in ["main_input.npy", "aux_input.npy", "labels.npy"] {
        try FileManager.default.copyItem(
            atPath: source + "/" + file, toPath: destination + "/" + file)
    }
}

/// The tensors of a safetensors file by name.
func readTensors(_ path: String) throws -> [String: HostArray] {
    var tensors: [String: HostArray] = [:]
    for (name, array) in try SafeTensors.read(contentsOf: path) {
        tensors[name] = array
    }
    return tensors
}

/// The largest absolute difference over all tensors of two weight sets,
/// failing when the names or shapes differ.
func maxAbsDifference(
    _ a: [String: HostArray], _ b: [String: HostArray],
    file: StaticString = #filePath, line: UInt = #line
) -> Float {
    XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), file: file, line: line)
    var worst: Float = 0
    for (name, x) in a {
        guard let y = b[name] else { continue }
        XCTAssertEqual(x.shape, y.shape, name, file: file, line: line)
        guard x.shape == y.shape else { return .infinity }
        for (p, q) in zip(x.floats(), y.floats()) {
            let d = abs(p - q)
            if !(d <= worst) { worst = d.isNaN ? .infinity : d }
        }
    }
    return worst
}

/// One JSON object per line of a `--metrics` file, parsed strictly.
func readMetrics(
    _ path: String, file: StaticString = #filePath, line: UInt = #line
) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    XCTAssertTrue(
        text.hasSuffix("\n"), "metrics file does not end a line",
        file: file, line: line)
    return try text.split(separator: "\n").map { record in
        let object = try JSONSerialization.jsonObject(
            with: Data(record.utf8))
        return try XCTUnwrap(
            object as? [String: Any], "not an object: \(record)",
            file: file, line: line)
    }
}
