import Foundation
import Network
import XCTest

@testable import Launcher

/// The checkpoint file, its folder and the pieces they rest on, without
/// running the trainer.
final class CheckpointTests: XCTestCase {
    // MARK: SHA-256

    /// Digests from FIPS 180-4's examples (and Python's hashlib).
    func testSHA256KnownDigests() {
        let cases: [(String, String)] = [
            (
                "",
                "e3b0c44298fc1c149afbf4c8996fb924"
                    + "27ae41e4649b934ca495991b7852b855"
            ),
            (
                "abc",
                "ba7816bf8f01cfea414140de5dae2223"
                    + "b00361a396177a9cb410ff61f20015ad"
            ),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039"
                    + "a33ce45964ff2167f6ecedd419db06c1"
            ),
        ]
        for (text, digest) in cases {
            XCTAssertEqual(SHA256.hex(Array(text.utf8)), digest, text)
        }
        XCTAssertEqual(
            SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Fed in pieces of every awkward size, the digest is the same as in
    /// one piece (and as hashlib's for these 1000 bytes).
    func testSHA256InPieces() {
        let bytes = (0..<1000).map { UInt8(($0 * 31 + 7) % 251) }
        let whole =
            "008549d94fa71e7a0a483d84380d05a9"
            + "23a4b18e79ba1f8a8ddac923956d32ef"
        XCTAssertEqual(SHA256.hex(bytes), whole)
        for piece in [1, 3, 55, 56, 63, 64, 65, 127, 999] {
            var hash = SHA256()
            var start = 0
            while start < bytes.count {
                let end = min(start + piece, bytes.count)
                hash.update(Array(bytes[start..<end]))
                start = end
            }
            XCTAssertEqual(SHA256.hexString(hash.finish()), whole, "\(piece)")
        }
    }

    // MARK: The file

    func testRoundTripKeepsEveryBit() throws {
        let original = sample()
        let decoded = try Checkpoint.decode(
            try original.encoded(), file: "mem")
        XCTAssertEqual(
            decoded.parameters.map(\.bitPattern),
            original.parameters.map(\.bitPattern))
        XCTAssertEqual(
            decoded.velocity.map(\.bitPattern),
            original.velocity.map(\.bitPattern))
        XCTAssertEqual(decoded.epochSums, original.epochSums)
        XCTAssertEqual(decoded.epochAUC, original.epochAUC)
        XCTAssertEqual(decoded.epochsDone, 2)
        XCTAssertEqual(decoded.stepInEpoch, 3)
        XCTAssertEqual(decoded.globalStep, 13)
        XCTAssertEqual(decoded.ranks, 2)
        XCTAssertEqual(decoded.iterations, 12)
        XCTAssertEqual(decoded.skippedSteps, 1)
        XCTAssertEqual(decoded.history, original.history)
        XCTAssertTrue(
            decoded.settings.differences(from: original.settings).isEmpty)
        // The same state always gives the same bytes.
        XCTAssertEqual(try decoded.encoded(), try original.encoded())
    }

    /// Any changed byte, in the header or in the data, and any truncation
    /// is refused.
    func testDamageIsDetected() throws {
        let bytes = try sample().encoded()
        let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8
        var positions = [0, 9, headerLength / 2, headerLength + 7]
        positions += stride(from: headerLength + 8, to: bytes.count, by: 37)
        for position in positions {
            var damaged = bytes
            damaged[position] ^= 0x10
            XCTAssertThrowsError(
                try Checkpoint.decode(damaged, file: "f"),
                "byte \(position) of \(bytes.count) changed")
        }
        for length in [0, 7, 8, headerLength, bytes.count - 1] {
            XCTAssertThrowsError(
                try Checkpoint.decode(Array(bytes[0..<length]), file: "f"),
                "truncated to \(length)")
        }
    }

    func testPlainWeightsFileIsNotACheckpoint() throws {
        let bytes = try SafeTensors.encode(
            [("parameters", HostArray(shape: [2], floats: [1, 2]))])
        XCTAssertThrowsError(try Checkpoint.decode(bytes, file: "w")) {
            XCTAssertTrue("\($0)".contains("not a checkpoint"), "\($0)")
        }
    }

    func testDifferencesNameTheOption() {
        let stored = sample().settings
        var changed = stored
        func set(_ key: String, _ value: String) {
            let index = changed.entries.firstIndex { $0.key == key }!
            changed.entries[index].value = value
        }
        set("batch-size", "16")
        set("data:labels.npy", "size=9 sha256=0")
        let lines = changed.differences(from: stored)
        XCTAssertEqual(lines.count, 2, "\(lines)")
        XCTAssertTrue(lines[0].hasPrefix("--batch-size:"), lines[0])
        XCTAssertTrue(lines[1].contains("labels.npy"), lines[1])
    }

    // MARK: The folder

    func testNamesSortByEpochThenStep() throws {
        let dir = try temporaryDirectory(for: self)
        let folder = CheckpointFolder(path: dir, keep: 10)
        for (e, s) in [(10, 0), (2, 12), (2, 3), (0, 7)] {
            var checkpoint = sample()
            (checkpoint.epochsDone, checkpoint.stepInEpoch) = (e, s)
            checkpoint.stepsPerEpoch = 20
            try folder.write(checkpoint)
        }
        // Names the folder must ignore.
        let others = [
            "notes.txt", "ckpt-eX-s1.safetensors", "ckpt-e1.safetensors",
        ]
        for name in others {
            XCTAssertTrue(
                FileManager.default.createFile(
                    atPath: dir + "/" + name, contents: nil))
        }
        XCTAssertEqual(
            try folder.list().map(\.name),
            [
                "ckpt-e0000-s000007.safetensors",
                "ckpt-e0002-s000003.safetensors",
                "ckpt-e0002-s000012.safetensors",
                "ckpt-e0010-s000000.safetensors",
            ])
    }

    func testKeepsTheNewestK() throws {
        let dir = try temporaryDirectory(for: self)
        let folder = CheckpointFolder(path: dir, keep: 2)
        for step in 0..<5 {
            var checkpoint = sample()
            checkpoint.stepInEpoch = step
            try folder.write(checkpoint)
        }
        XCTAssertEqual(
            try folder.list().map(\.step), [3, 4])
        // No temporary files are left behind.
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir).count, 2)
    }

    /// A damaged newest checkpoint is reported by name and set aside; the
    /// one before it is used. All damaged is an error; none is nil.
    func testNewestValidFallsBack() throws {
        let dir = try temporaryDirectory(for: self)
        let folder = CheckpointFolder(path: dir, keep: 5)
        XCTAssertNil(try folder.newestValid(warn: { XCTFail($0) }))
        for step in 1...3 {
            var checkpoint = sample()
            checkpoint.stepInEpoch = step
            try folder.write(checkpoint)
        }
        let newest = dir + "/ckpt-e0002-s000003.safetensors"
        let bytes = try readAll(newest)
        try Data(bytes[0..<(bytes.count / 2)]).write(
            to: URL(fileURLWithPath: newest))
        var warnings: [String] = []
        let found = try XCTUnwrap(
            try folder.newestValid(warn: { warnings.append($0) }))
        XCTAssertEqual(found.checkpoint.stepInEpoch, 2)
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains(newest), warnings[0])
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: newest + ".damaged"))
        XCTAssertEqual(try folder.list().map(\.step), [1, 2])

        for entry in try folder.list() {
            var damaged = try readAll(dir + "/" + entry.name)
            damaged[damaged.count - 1] ^= 1
            try Data(damaged).write(
                to: URL(fileURLWithPath: dir + "/" + entry.name))
        }
        XCTAssertThrowsError(try folder.newestValid(warn: { _ in })) {
            XCTAssertTrue("\($0)".contains("no valid checkpoint"), "\($0)")
            XCTAssertTrue("\($0)".contains("checksum mismatch"), "\($0)")
        }
    }

    func testFreshRunRefusesAFolderWithCheckpoints() throws {
        let dir = try temporaryDirectory(for: self) + "/a/b"
        let folder = CheckpointFolder(path: dir, keep: 3)
        try folder.prepare(resuming: false)
        try folder.write(sample())
        XCTAssertThrowsError(try folder.prepare(resuming: false)) {
            XCTAssertTrue("\($0)".contains("--resume"), "\($0)")
        }
        XCTAssertNoThrow(try folder.prepare(resuming: true))
    }

    // MARK: Test faults

    func testFaultSpecifications() throws {
        setenv(TestFaults.failVariable, "1:4,0:9:nan,2:1:kill", 1)
        setenv(TestFaults.delayVariable, "25", 1)
        defer {
            unsetenv(TestFaults.failVariable)
            unsetenv(TestFaults.delayVariable)
        }
        let faults = try TestFaults.fromEnvironment()
        XCTAssertEqual(
            faults.faults,
            [
                .init(rank: 1, step: 4, kind: .error),
                .init(rank: 0, step: 9, kind: .nan),
                .init(rank: 2, step: 1, kind: .kill),
            ])
        XCTAssertEqual(faults.stepDelayMilliseconds, 25)
        XCTAssertThrowsError(try faults.beforeStep(4, rank: 1))
        XCTAssertNoThrow(try faults.beforeStep(4, rank: 0))
        for bad in ["1", "a:2", "1:0", "1:2:boom", "-1:3"] {
            setenv(TestFaults.failVariable, bad, 1)
            XCTAssertThrowsError(try TestFaults.fromEnvironment(), bad)
        }
    }

    // MARK: Helpers

    private func sample() -> Checkpoint {
        var random = TestRandom(seed: 5)
        let parameters = (0..<37).map { _ in random.float() }
        let settings = CheckpointSettings(
            metadata: [
                "setting.vocab-size": "40", "setting.embedding-dim": "6",
                "setting.lstm-units": "4", "setting.dense-units": "5",
                "setting.dense-layers": "3", "setting.batch-size": "5",
                "setting.seed": "11", "setting.zz": "1",
                "setting.data:labels.npy": "size=1 sha256=00",
            ])
        return Checkpoint(
            epochsDone: 2, stepInEpoch: 3, stepsPerEpoch: 5, ranks: 2,
            iterations: 12, skippedSteps: 1, settings: settings,
            history: [
                "{\"epoch\": 1, \"loss\": 0.5}",
                "{\"epoch\": 2, \"loss\": null}",
            ],
            layout: "w [37]", parameters: parameters,
            velocity: parameters.map { $0 * $0 },
            epochSums: [1.5, 2.25, 3, 4, 10],
            epochAUC: (0..<(2 * Checkpoint.aucWidth)).map { Double($0 % 7) })
    }
}
