import Foundation
import Network

/// The files of a prepared folder; prepare.json is written last, so a
/// folder with a prepare.json is complete.
enum PreparedFolder {
    static let mainInput = "main_input.npy"
    static let auxInput = "aux_input.npy"
    static let labels = "labels.npy"
    static let vocabulary = "vocabulary.txt"
    static let record = "prepare.json"

    /// What is at `path` now.
    enum Existing {
        case nothing
        case emptyFolder
        case preparedFolder
    }

    /// Checks that `path` may receive a prepared folder: it must not exist,
    /// be an empty folder, or be a prepared folder (then only with
    /// `overwrite`). Anything else is never replaced.
    static func check(_ path: String, overwrite: Bool) throws -> Existing {
        var isDirectory: ObjCBool = false
        guard
            FileManager.default.fileExists(
                atPath: path, isDirectory: &isDirectory)
        else {
            return .nothing
        }
        guard isDirectory.boolValue else {
            throw ImportError(
                file: path, "exists and is not a folder; not replacing it")
        }
        if FileManager.default.fileExists(atPath: path + "/" + record) {
            if !overwrite {
                throw ImportError(
                    file: path,
                    "already holds a prepared folder (it has a prepare.json); "
                        + "give --overwrite to replace it")
            }
            return .preparedFolder
        }
        let entries =
            (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        if !entries.isEmpty {
            throw ImportError(
                file: path,
                "exists, is not empty and is not a prepared folder (no prepare.json); "
                    + "not replacing it")
        }
        return .emptyFolder
    }

    /// Writes `data` as a folder at `path`: everything goes into the sibling
    /// `path.partial-<pid>`, which is renamed to `path` at the very end. On
    /// any failure that temporary folder is removed and `path` is as before.
    static func write(_ data: PreparedData, to target: String, overwrite: Bool)
        throws
    {
        var path = target
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        _ = try check(path, overwrite: overwrite)
        let pid = getpid()
        let partial = path + ".partial-\(pid)"
        let manager = FileManager.default
        if manager.fileExists(atPath: partial) {
            try manager.removeItem(atPath: partial)  // left by an earlier crash
        }
        do {
            try manager.createDirectory(
                atPath: partial, withIntermediateDirectories: false)
        } catch {
            throw ImportError(
                file: partial,
                "cannot create the output folder: \(error.localizedDescription)"
            )
        }
        do {
            let record = data.record
            let rows = record.rows.written
            // HostArray stops the process on a count that does not fit the
            // shape; a mismatch here is a bug, reported as an error instead.
            func checked(_ shape: [Int], _ count: Int, _ name: String) throws
                -> [Int]
            {
                guard shape.reduce(1, *) == count else {
                    throw ImportError(
                        file: partial + "/" + name,
                        "internal error: \(count) values for shape \(shape)")
                }
                return shape
            }
            let mainShape = try checked(
                [rows, record.sequenceLength], data.ids.count, mainInput)
            try NPY.write(
                HostArray(shape: mainShape, int32s: data.ids),
                to: partial + "/" + mainInput)
            let auxShape = try checked(
                [rows, record.featureNames.count], data.aux.count, auxInput)
            try NPY.write(
                HostArray(shape: auxShape, floats: data.aux),
                to: partial + "/" + auxInput)
            let labelShape = try checked([rows, 1], data.labels.count, labels)
            try NPY.write(
                HostArray(shape: labelShape, floats: data.labels),
                to: partial + "/" + labels)
            try writeFileAtomically(
                Array(data.vocabulary.fileText.utf8),
                to: partial + "/" + vocabulary)
            try writeFileAtomically(
                try record.jsonBytes(), to: partial + "/" + self.record)
            try install(partial, at: path, overwrite: overwrite, pid: pid)
        } catch {
            try? manager.removeItem(atPath: partial)
            throw error
        }
    }

    /// Renames the finished folder `partial` to `path`, replacing an empty
    /// folder or (with `overwrite`) an earlier prepared folder there.
    private static func install(
        _ partial: String, at path: String, overwrite: Bool, pid: Int32
    ) throws {
        func osFailure(_ what: String) -> ImportError {
            ImportError(
                file: path, "\(what): \(String(cString: strerror(errno)))")
        }
        switch try check(path, overwrite: overwrite) {
        case .nothing:
            break
        case .emptyFolder:
            if rmdir(path) != 0 {
                throw osFailure("cannot remove the empty folder")
            }
        case .preparedFolder:
            // Move the old folder aside first: rename cannot replace a
            // folder that has files in it.
            let aside = path + ".replaced-\(pid)"
            if rename(path, aside) != 0 {
                throw osFailure("cannot move the old prepared folder aside")
            }
            if rename(partial, path) != 0 {
                let failure = osFailure("cannot rename \(partial) to it")
                _ = rename(aside, path)
                throw failure
            }
            try? FileManager.default.removeItem(atPath: aside)
            return
        }
        if rename(partial, path) != 0 {
            throw osFailure("cannot rename \(partial) to it")
        }
    }
}

/// Runs the whole import: reads, computes and writes the folder.
@discardableResult
func prepare(_ options: PrepareOptions) throws -> PrepareRecord {
    // Refuse an existing folder before the work, and again before the rename.
    _ = try PreparedFolder.check(options.out, overwrite: options.overwrite)
    let data = try buildPreparedData(options)
    try PreparedFolder.write(
        data, to: options.out, overwrite: options.overwrite)
    return data.record
}

/// `headline-trainer prepare ...` (the arguments after the word prepare).
/// Prints a summary on stdout and returns the exit status; input and usage
/// problems are thrown for the caller to print.
func runPrepare(_ arguments: [String]) throws -> Int32 {
    guard let options = try PrepareOptions.parse(arguments) else {
        print(
            helpText(
                command: "prepare", summary: PrepareOptions.summary,
                options: PrepareOptions.specs))
        return 0
    }
    let started = Date()
    let record = try prepare(options)
    print(
        prepareSummary(
            record, out: options.out, seconds: Date().timeIntervalSince(started)
        ))
    return 0
}

/// The lines `prepare` prints when it is done.
func prepareSummary(_ r: PrepareRecord, out: String, seconds: Double) -> String
{
    func percent(_ part: Int, _ whole: Int) -> String {
        whole == 0
            ? "-" : String(format: "%.1f%%", 100 * Double(part) / Double(whole))
    }
    let rows = r.rows
    let features =
        r.featureNames.isEmpty ? "none" : r.featureNames.joined(separator: ", ")
    let time = String(format: "%.2f", seconds)
    var lines: [String] = []
    lines.append("prepared \(out) from \(r.sourceFile) in \(time) s")
    lines.append(
        "  rows: \(rows.inFile) in file, \(rows.duplicatesDropped) duplicates dropped, "
            + "\(rows.emptyTextDropped) empty texts dropped, \(rows.written) written "
            + "(\(rows.training) training, \(rows.validation) validation)")
    let trainingShare = percent(r.labels.trainingPositive, rows.training)
    let validationShare = percent(r.labels.validationPositive, rows.validation)
    lines.append(
        "  label: \(r.labelColumn) > \(r.labelThresholdValue) (\(r.labelThreshold)); "
            + "positive: \(trainingShare) of training, \(validationShare) of validation"
    )
    lines.append(
        "  vocabulary: \(r.vocabularyWords) words (vocab_size \(r.vocabSize)), "
            + "sequence length \(r.sequenceLength)")
    lines.append("  aux features (\(r.featureNames.count)): \(features)")
    if let seed = r.shuffleSeed { lines.append("  shuffled with seed \(seed)") }
    return lines.joined(separator: "\n")
}
