import Foundation
import Network

/// The folder of `--checkpoint-dir`: names, the newest valid checkpoint,
/// and keeping the last few. Only rank 0 touches it.
///
/// A checkpoint is `ckpt-eEEEE-sSSSSSS.safetensors`: EEEE epochs finished
/// and SSSSSS steps into the next one, so the name says where a resumed
/// run starts, and sorting by the two numbers sorts by time.
struct CheckpointFolder {
    let path: String
    /// How many checkpoints to keep (`--keep-checkpoints`).
    let keep: Int

    /// One checkpoint file found in the folder.
    struct Entry {
        let name: String
        let epochsDone: Int
        let step: Int
    }

    static func fileName(epochsDone: Int, step: Int) -> String {
        "ckpt-e" + padded(epochsDone, 4) + "-s" + padded(step, 6)
            + ".safetensors"
    }

    func file(_ name: String) -> String {
        (path as NSString).appendingPathComponent(name)
    }

    /// The checkpoint files, oldest first.
    func list() throws -> [Entry] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw DataError(
                "--checkpoint-dir '\(path)': cannot list the folder: "
                    + "\(error.localizedDescription)")
        }
        return names.compactMap(CheckpointFolder.parse).sorted {
            ($0.epochsDone, $0.step) < ($1.epochsDone, $1.step)
        }
    }

    /// Creates the folder if needed and checks that it can be written,
    /// before any training. A fresh run refuses a folder that already
    /// holds checkpoints: they belong to another run, and mixing the two
    /// (or deleting them) could lose it.
    func prepare(resuming: Bool) throws {
        let option = "--checkpoint-dir '\(path)'"
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true)
        } catch {
            throw DataError(
                "\(option): cannot create the folder: "
                    + underlyingReason(error))
        }
        var isDirectory: ObjCBool = false
        guard
            FileManager.default.fileExists(
                atPath: path, isDirectory: &isDirectory), isDirectory.boolValue
        else { throw DataError("\(option): not a folder") }
        guard access(path, W_OK | X_OK) == 0 else {
            throw DataError(
                "\(option): cannot write into the folder: "
                    + String(cString: strerror(errno)))
        }
        let existing = try list()
        if !resuming, let newest = existing.last {
            throw DataError(
                "\(option) already holds \(existing.count) checkpoint(s), "
                    + "the newest \(newest.name); pass --resume to continue "
                    + "that run, or choose another folder")
        }
        // Temporary files of a write that a kill interrupted.
        for name in try FileManager.default.contentsOfDirectory(atPath: path)
        where name.hasPrefix(".ckpt-e") && name.contains(".safetensors.tmp-") {
            try? FileManager.default.removeItem(atPath: file(name))
        }
    }

    /// Writes `checkpoint` atomically, then removes all but the newest
    /// `keep`. Returns the file's path.
    @discardableResult
    func write(_ checkpoint: Checkpoint) throws -> String {
        let target = file(
            CheckpointFolder.fileName(
                epochsDone: checkpoint.epochsDone,
                step: checkpoint.stepInEpoch))
        try writeFileAtomically(try checkpoint.encoded(), to: target)
        let all = try list()
        for old in all.dropLast(keep) {
            try? FileManager.default.removeItem(atPath: file(old.name))
        }
        return target
    }

    /// The newest checkpoint that reads back whole, with its bytes; nil
    /// when the folder holds none. A damaged one is reported through
    /// `warn`, naming the file and why, and renamed to `NAME.damaged` so
    /// it can be inspected but is neither used nor counted again; then the
    /// one before it is tried. Throws when every checkpoint is damaged.
    func newestValid(warn: (String) -> Void) throws
        -> (path: String, bytes: [UInt8], checkpoint: Checkpoint)?
    {
        let all = try list()
        var problems: [String] = []
        for entry in all.reversed() {
            let target = file(entry.name)
            do {
                let bytes = try readAll(target)
                let checkpoint = try Checkpoint.decode(bytes, file: target)
                return (target, bytes, checkpoint)
            } catch {
                problems.append("\(error)")
                let aside = target + ".damaged"
                let moved = rename(target, aside) == 0
                warn(
                    "checkpoint \(target) is damaged: \(error); "
                        + (moved ? "set aside as \(aside); " : "")
                        + "trying the one before it")
            }
        }
        if all.isEmpty { return nil }
        throw DataError(
            "--checkpoint-dir '\(path)': no valid checkpoint; all "
                + "\(all.count) are damaged:\n  "
                + problems.joined(separator: "\n  "))
    }

    private static func parse(_ name: String) -> Entry? {
        guard name.hasPrefix("ckpt-e"), name.hasSuffix(".safetensors")
        else { return nil }
        let middle = name.dropFirst("ckpt-e".count)
            .dropLast(".safetensors".count)
        let parts = middle.split(
            separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].first == "s",
            let epochs = Int(parts[0]), let step = Int(parts[1].dropFirst()),
            epochs >= 0, step >= 0
        else { return nil }
        return Entry(name: name, epochsDone: epochs, step: step)
    }

    private static func padded(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count))
            + digits
    }
}

/// Reads a whole file, naming it and the OS reason on failure.
func readAll(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw DataError(
            "\(path): cannot read: \(String(cString: strerror(errno)))")
    }
    return [UInt8](data)
}

/// The POSIX reason behind a Foundation file error, when it has one.
func underlyingReason(_ error: Error) -> String {
    let nsError = error as NSError
    if let inner = nsError.userInfo[NSUnderlyingErrorKey] as? NSError,
        inner.domain == NSPOSIXErrorDomain
    {
        return String(cString: strerror(Int32(inner.code)))
    }
    return nsError.localizedDescription
}
