// libFuzzer harness for PrepareRecord.decode(bytes:file:), the reader of
// prepare.json (PrepareRecord.read(path:) reads the file and calls it).
//
// Outcomes allowed: a record, or an ImportError. A record must also hold
// values that the code using it (PreparedImport, FeatureSpec.rawFeatures,
// Vocabulary.encode, predict) can take without trapping, since a
// prepare.json may come from anywhere; and jsonBytes() must read back to
// an equal record.
@testable import LauncherImport

@_cdecl("LLVMFuzzerTestOneInput")
public func prepareJSONFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzInput(data, size)
    let record: PrepareRecord
    do {
        record = try PrepareRecord.decode(bytes: bytes, file: "fuzz-prepare.json")
    } catch is ImportError {
        return 0
    } catch {
        fuzzFail("PrepareRecord.decode threw \(type(of: error)), not ImportError: \(error)")
    }
    // PreparedImport computes vocab_size - 2; predict compares it with the
    // model's V. prepare itself accepts 2...100_000_000.
    if !(2...100_000_000).contains(record.vocabSize) {
        fuzzFail("accepted vocab_size \(record.vocabSize)")
    }
    if !(0...record.vocabSize - 2).contains(record.vocabularyWords) {
        fuzzFail("accepted vocabulary_words \(record.vocabularyWords) for vocab_size \(record.vocabSize)")
    }
    // Vocabulary.encode makes arrays of sequence_length ids; transform
    // reserves rows x sequence_length. prepare accepts 1...1_000_000.
    if !(1...1_000_000).contains(record.sequenceLength) {
        fuzzFail("accepted sequence_length \(record.sequenceLength)")
    }
    // FeatureSpec.rawFeatures converts hours x 3600 to Int64, which traps
    // outside Int64's range. prepare accepts -24...24.
    if !(record.timezoneOffsetHours.magnitude <= 24) {
        fuzzFail("accepted timezone_offset_hours \(record.timezoneOffsetHours)")
    }
    let encoded: [UInt8]
    do {
        encoded = try record.jsonBytes()
    } catch {
        fuzzFail("jsonBytes() failed on a decoded record: \(error)")
    }
    let again: PrepareRecord
    do {
        again = try PrepareRecord.decode(bytes: encoded, file: "roundtrip-prepare.json")
    } catch {
        fuzzFail("jsonBytes() output does not read back: \(error)")
    }
    if again != record {
        fuzzFail("round trip changed the record:\n\(record)\n->\n\(again)")
    }
    return 0
}
