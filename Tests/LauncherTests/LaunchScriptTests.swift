import Foundation
import XCTest

/// The launch scripts in scripts/: the local multi-process one for real,
/// and the SLURM batch script with a stand-in `srun` (no SLURM cluster
/// here), which checks the script's own plumbing: the options it passes,
/// the binary it picks, and that the ranks it starts train as one job.
final class LaunchScriptTests: XCTestCase {
    private var repository: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
    }

    private func trainArguments(_ dir: String) throws -> [String] {
        let data = try DataSpec(rows: 30).write(to: dir + "/data")
        return [
            "--data", data, "--epochs", "2", "--batch-size", "8",
            "--save-weights", dir + "/w.safetensors",
        ] + smallModelOptions()
    }

    func testLocalScriptTrainsOnTwoRanks() throws {
        let dir = try temporaryDirectory(for: self)
        let result = try CLI.runProgram(
            "/bin/bash",
            [repository + "/scripts/train-local.sh", "2"]
                + (try trainArguments(dir)),
            environment: ["HEADLINE_TRAINER": try CLI.executable()])
        XCTAssertEqual(result.status, 0, result.transcript)
        XCTAssertEqual(
            occurrences(of: "training on 2 ranks", in: result.stdout), 1,
            result.transcript)
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: dir + "/w.safetensors"))
    }

    func testLocalScriptRefusesABadRankCount() throws {
        let result = try CLI.runProgram(
            "/bin/bash", [repository + "/scripts/train-local.sh", "two"])
        XCTAssertEqual(result.status, 2, result.transcript)
        XCTAssertTrue(result.stderr.contains("usage"), result.transcript)
    }

    func testSlurmScriptStartsTheRanksThroughSrun() throws {
        let dir = try temporaryDirectory(for: self)
        let bin = dir + "/bin"
        try FileManager.default.createDirectory(
            atPath: bin, withIntermediateDirectories: true)
        // The stand-in records its options, then starts SLURM_NTASKS ranks
        // with mpirun, as srun would with PMIx.
        let fake = bin + "/srun"
        try """
        #!/bin/bash
        opts=()
        while [[ $1 == --* ]]; do opts+=("$1"); shift; done
        printf '%s\\n' "${opts[@]}" > "\(dir)/srun-options"
        exec mpirun --oversubscribe --bind-to none -np "$SLURM_NTASKS" "$@"
        """.write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
        let path =
            bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "")
        let result = try CLI.runProgram(
            "/bin/bash",
            [repository + "/scripts/slurm/train.sbatch"]
                + (try trainArguments(dir)),
            in: dir,
            environment: [
                "PATH": path, "SLURM_SUBMIT_DIR": dir, "SLURM_NTASKS": "2",
                "SLURM_NNODES": "1", "HEADLINE_TRAINER": try CLI.executable(),
            ])
        XCTAssertEqual(result.status, 0, result.transcript)
        XCTAssertTrue(result.stdout.contains("1 node(s), 2 rank(s)"))
        XCTAssertEqual(
            occurrences(of: "training on 2 ranks", in: result.stdout), 1,
            result.transcript)
        let options = try String(
            contentsOfFile: dir + "/srun-options", encoding: .utf8)
        XCTAssertTrue(options.contains("--mpi=pmix"), options)
        XCTAssertTrue(options.contains("--kill-on-bad-exit=1"), options)
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: dir + "/w.safetensors"))
    }

    func testSlurmScriptNamesAMissingBinary() throws {
        let dir = try temporaryDirectory(for: self)
        let result = try CLI.runProgram(
            "/bin/bash", [repository + "/scripts/slurm/train.sbatch"],
            in: dir,
            environment: [
                "SLURM_SUBMIT_DIR": dir,
                "HEADLINE_TRAINER": dir + "/no-such-binary",
            ])
        XCTAssertEqual(result.status, 1, result.transcript)
        XCTAssertTrue(result.stderr.contains(dir + "/no-such-binary"))
    }
}
