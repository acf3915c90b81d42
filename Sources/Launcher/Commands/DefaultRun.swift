import Collective
import Foundation
import Network

/// Where `train` puts what it makes when no file names are given: the
/// prepared data, the trained weights and the import choices beside them.
enum RunFolder {
    static let defaultPath = "headline-model"
    static let weightsName = "weights.safetensors"
    /// The files of a prepared folder that `predict --csv` needs.
    static let importFiles = ["prepare.json", "vocabulary.txt"]

    /// Prepares the bundled data set into `folder/data` unless an earlier
    /// run already did. Rank 0 imports; the ranks agree before anyone reads
    /// the files, so under mpirun the import happens once.
    static func prepareBundledData(
        in folder: String, comm: Communicator, reporter: ProgressReporter
    ) throws -> String {
        let data = (folder as NSString).appendingPathComponent("data")
        try comm.agreeing {
            guard comm.rank == 0 else { return }
            let record = (data as NSString).appendingPathComponent(
                "prepare.json")
            if FileManager.default.fileExists(atPath: record) {
                reporter.printLine("using the bundled data prepared in \(data)")
                return
            }
            try FileManager.default.createDirectory(
                atPath: folder, withIntermediateDirectories: true)
            let csv = try bundledDatasetCSV()
            reporter.printLine(
                "preparing the bundled data set \(csv) into \(data)")
            guard
                let options = try PrepareOptions.parse(
                    defaultPrepareArguments(csv: csv, out: data))
            else { return }
            let summary = try prepare(options)
            reporter.printLine(
                "prepared \(summary.rows.written) posts: "
                    + "\(summary.rows.training) for training, "
                    + "\(summary.rows.validation) for validation; label = "
                    + "\(summary.labelColumn) > "
                    + "\(summary.labelThresholdValue)")
        }
        return data
    }

    /// The training-row count an earlier import fixed, when `folder` holds
    /// a prepare.json: its rows are already shuffled and split.
    static func preparedTrainingRows(in folder: String) -> Int? {
        let path = (folder as NSString).appendingPathComponent("prepare.json")
        guard FileManager.default.fileExists(atPath: path),
            let record = try? PrepareRecord.read(path: path)
        else { return nil }
        return record.rows.training
    }

    /// Copies the import choices of `dataFolder`, if it has them, into
    /// `folder`, so that `predict --csv` finds them beside the weights.
    static func copyImportChoices(from dataFolder: String, to folder: String)
        throws
    {
        for name in importFiles {
            let source = (dataFolder as NSString).appendingPathComponent(name)
            guard let bytes = FileManager.default.contents(atPath: source)
            else { continue }
            let target = (folder as NSString).appendingPathComponent(name)
            if (source as NSString).standardizingPath
                == (target as NSString).standardizingPath
            {
                continue
            }
            try writeFileAtomically([UInt8](bytes), to: target)
        }
    }
}
