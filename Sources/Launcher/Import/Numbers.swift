/// A decimal number as written in a CSV field: optional sign, digits with
/// an optional decimal point, optional exponent; spaces and tabs around it
/// are ignored. NaN, infinities, hexadecimal and values too large for a
/// Double are refused, so a label or feature is always a finite number.
func parseDecimal(_ text: String) -> Double? {
    let bytes = Array(text.utf8)
    var start = 0
    var end = bytes.count
    while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 {
        start += 1
    }
    while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 {
        end -= 1
    }
    var i = start
    func isDigit(_ k: Int) -> Bool {
        k < end && bytes[k] >= 0x30 && bytes[k] <= 0x39
    }
    if i < end, bytes[i] == 0x2B || bytes[i] == 0x2D { i += 1 }
    var digits = 0
    while isDigit(i) { i += 1; digits += 1 }
    if i < end, bytes[i] == 0x2E {
        i += 1
        while isDigit(i) { i += 1; digits += 1 }
    }
    guard digits > 0 else { return nil }
    if i < end, bytes[i] == 0x65 || bytes[i] == 0x45 {
        i += 1
        if i < end, bytes[i] == 0x2B || bytes[i] == 0x2D { i += 1 }
        guard isDigit(i) else { return nil }
        while isDigit(i) { i += 1 }
    }
    guard i == end,
        let value = Double(String(decoding: bytes[start..<end], as: UTF8.self)),
        value.isFinite
    else { return nil }
    return value
}

/// The median of `values` (the mean of the two middle ones for an even
/// count), as numpy computes it. `values` must not be empty.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1
        ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
