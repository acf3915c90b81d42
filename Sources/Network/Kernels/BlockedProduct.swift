import Synchronization

/// The blocking around `MicroKernel`, shared by the three products.
///
/// All three are reduced to `C[m, n] (+)= Â[m, k] · B̂[k, n]` where B̂'s
/// rows are contiguous runs of floats the kernel can load as vectors:
///
/// - `A · B` and `Aᵀ · B` read B̂ = B in place, row p at `b + p · ldb`;
///   only Â's element stride differs (along a row of A, or down a column);
/// - `A · Bᵀ` copies each block of Bᵀ into a scratch buffer first, since
///   Bᵀ's rows are columns of B.
///
/// The loops, outermost first: column blocks of `columnBlock` (for the
/// scratch copy of Bᵀ), depth blocks of `depthBlock` (so that the
/// `depthBlock × columnBlock` part of B̂ stays in L2 for the long shared
/// dimension of the weight gradients, k = n_u ≈ 2700), row tiles of
/// `MicroKernel.rows` (an Â tile stays in L1 while it meets every column
/// panel), and column panels of 64, then one of 48, 32 or 16 for what is
/// left (or panels of 16 throughout, see `wideTiles`), then a last partial
/// panel of fewer than 16 columns that is copied into scratch with zero
/// padding (a full-width load from B there could run past the end of B).
enum BlockedProduct {
    /// Depth (k) per block.
    static let depthBlock = 256
    /// Columns (n) per block; a multiple of 64.
    static let columnBlock = 512

    /// Which operand is read transposed.
    enum Form {
        /// `A[m, k] · B[k, n]`.
        case plain
        /// `A[k, m]ᵀ · B[k, n]`.
        case transposedA
        /// `A[m, k] · B[n, k]ᵀ`.
        case transposedB
    }

    /// Whether the tiles are 6 × 64 (24 SIMD16 accumulators, in 24 of
    /// AVX-512's 32 vector registers) or 6 × 16 (6 accumulators, which AVX2
    /// holds in 12 of its 16 registers; 6 × 64 would need 48 there and
    /// spill). Package.swift defines HEADLINE_AVX512 when the target CPU
    /// has AVX-512.
    #if HEADLINE_AVX512
        static let wideTiles = true
    #else
        static let wideTiles = false
    #endif

    /// With `aRows`, A's rows are picked from the table at `a` (rows `lda`
    /// apart): row i of A is table row `aRows[i]` in the plain form, and
    /// row p (of k) is `aRows[p]` in the transposed one; the transposed
    /// form then always packs its A tiles.
    ///
    /// `wideTiles` is a parameter only so that the tests can run both
    /// tilings on any machine; the products always pass the default.
    @inline(__always)
    static func run(
        _ form: Form, m: Int, n: Int, k: Int,
        _ a: UnsafePointer<Float>, lda: Int, aRows: UnsafePointer<Int32>? = nil,
        _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool, wideTiles: Bool = BlockedProduct.wideTiles
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "negative matrix size")
        precondition(
            aRows == nil || form != .transposedB,
            "A · Bᵀ takes A in place only")
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate {
                for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
            }
            return
        }
        // The Bᵀ copies and the zero-padded right edge need scratch; a
        // product that needs neither never touches it.
        // Narrow tiles on a product of more than a few row tiles read B
        // from panels packed contiguous (see `packPanels`), and Aᵀ from
        // packed row tiles.
        let packed = !wideTiles && m >= 16 * MicroKernel.rows
        let aTransposed = form == .transposedA
        let packsA = aTransposed && (packed || aRows != nil)
        let needsScratch =
            packed || packsA || form == .transposedB || n % 16 != 0
        let scratch = needsScratch ? Scratch.take() : nil
        defer { if let scratch { Scratch.give(back: scratch) } }

        // Â element (i, p) is at a + i · rowStride + p · aStep (without
        // aRows).
        let rowStride = aTransposed ? 1 : lda
        let aStep = aTransposed ? lda : 1

        var j0 = 0
        while j0 < n {
            let nb = min(columnBlock, n - j0)
            let vectorColumns = nb & ~15
            let edge = nb - vectorColumns
            var p0 = 0
            while p0 < k {
                let kb = min(depthBlock, k - p0)
                let load = accumulate || p0 > 0
                // Where B̂'s rows for this block are: the vector columns,
                // and the zero-padded 16-wide edge panel.
                let panel: UnsafePointer<Float>, panelStride: Int
                let edgePanel: UnsafePointer<Float>, edgeStride: Int
                if packed {
                    // Each 16-column panel of the block contiguous, kb × 16
                    // (the edge zero-padded), so that its rows are 64
                    // bytes apart: rows a whole B row apart (512 or 2048
                    // bytes) fall into a few of L1's sets and evict each
                    // other within one pass over the depth.
                    if form == .transposedB {
                        packTransposed(
                            b + j0 * ldb + p0, ldb: ldb, rows: nb, depth: kb,
                            into: scratch!, width: 16, groupStride: kb * 16)
                    } else {
                        packPanels(
                            b + p0 * ldb + j0, ldb: ldb, columns: nb,
                            depth: kb, into: scratch!)
                    }
                    panel = UnsafePointer(scratch!)
                    panelStride = 16
                    edgePanel = panel + (vectorColumns / 16) * kb * 16
                    edgeStride = 16
                } else if form == .transposedB {
                    let width = (nb + 15) & ~15
                    packTransposed(
                        b + j0 * ldb + p0, ldb: ldb, rows: nb, depth: kb,
                        into: scratch!, width: width, groupStride: 16)
                    panel = UnsafePointer(scratch!)
                    panelStride = width
                    edgePanel = panel + vectorColumns
                    edgeStride = width
                } else {
                    panel = b + p0 * ldb + j0
                    panelStride = ldb
                    if edge > 0 {
                        packEdge(
                            panel + vectorColumns, ldb: ldb, columns: edge,
                            depth: kb, into: scratch!)
                    }
                    // (Unused when there is no edge, and then there may be
                    // no scratch.)
                    edgePanel = edge > 0 ? UnsafePointer(scratch!) : b
                    edgeStride = 16
                }

                var i0 = 0
                while i0 < m {
                    let rows = min(MicroKernel.rows, m - i0)
                    var offsets: MicroKernel.RowOffsets
                    var aTile: UnsafePointer<Float>
                    if let aRows, !aTransposed {
                        offsets = MicroKernel.RowOffsets(
                            rows: aRows + i0, rowStride: lda, valid: rows)
                        aTile = a + Int(aRows[i0]) * lda + p0
                    } else {
                        offsets = MicroKernel.RowOffsets(
                            rowStride: rowStride, valid: rows)
                        aTile = a + i0 * rowStride + p0 * aStep
                    }
                    var aStep = aStep
                    if packsA {
                        // The table rows of this depth block, with aRows
                        // (see `column`). A plain value, not a closure: a
                        // debug build would box the loop variables it
                        // captured, on the heap.
                        var blockRows: UnsafePointer<Int32>? = nil
                        if let aRows { blockRows = aRows + p0 }
                        // The tile's 6 columns of A, kb deep, side by side:
                        // in place they lie a whole row of A apart, in few
                        // of L1's sets, and they are read once per panel.
                        let tile = scratch! + Scratch.tileOffset
                        if rows == 6 && MicroKernel.rows == 6 {
                            // A full tile: six floats a step (four and
                            // two), without the per-element test, which
                            // kept the loop below scalar.
                            for p in 0..<kb {
                                let src = UnsafeRawPointer(
                                    BlockedProduct.column(
                                        p, inPlace: aTile, table: a,
                                        rows: blockRows, lda: lda, i0: i0))
                                let dst = UnsafeMutableRawPointer(
                                    tile + p * MicroKernel.rows)
                                dst.storeBytes(
                                    of: src.loadUnaligned(
                                        as: SIMD4<Float>.self),
                                    as: SIMD4<Float>.self)
                                dst.storeBytes(
                                    of: src.loadUnaligned(
                                        fromByteOffset: 16,
                                        as: SIMD2<Float>.self),
                                    toByteOffset: 16, as: SIMD2<Float>.self)
                            }
                        } else {
                            for p in 0..<kb {
                                let src = BlockedProduct.column(
                                    p, inPlace: aTile, table: a,
                                    rows: blockRows, lda: lda, i0: i0)
                                for r in 0..<MicroKernel.rows {
                                    tile[p * MicroKernel.rows + r] =
                                        r < rows ? src[r] : 0
                                }
                            }
                        }
                        aTile = UnsafePointer(tile)
                        offsets = MicroKernel.RowOffsets(
                            rowStride: 1, valid: rows)
                        aStep = MicroKernel.rows
                    }
                    let cRow = c + i0 * ldc + j0
                    var j = 0
                    if wideTiles {
                        while j + 64 <= vectorColumns {
                            MicroKernel.tile(
                                TileRow64.self, k: kb, a: aTile,
                                offsets: offsets, aStep: aStep, b: panel + j,
                                ldb: panelStride, c: cRow + j, ldc: ldc,
                                rows: rows, cols: 64, load: load)
                            j += 64
                        }
                        switch vectorColumns - j {
                        case 48:
                            MicroKernel.tile(
                                TileRow48.self, k: kb, a: aTile,
                                offsets: offsets, aStep: aStep, b: panel + j,
                                ldb: panelStride, c: cRow + j, ldc: ldc,
                                rows: rows, cols: 48, load: load)
                        case 32:
                            MicroKernel.tile(
                                TileRow32.self, k: kb, a: aTile,
                                offsets: offsets, aStep: aStep, b: panel + j,
                                ldb: panelStride, c: cRow + j, ldc: ldc,
                                rows: rows, cols: 32, load: load)
                        case 16:
                            MicroKernel.tile(
                                TileRow16.self, k: kb, a: aTile,
                                offsets: offsets, aStep: aStep, b: panel + j,
                                ldb: panelStride, c: cRow + j, ldc: ldc,
                                rows: rows, cols: 16, load: load)
                        default:
                            break
                        }
                    } else {
                        while j + 16 <= vectorColumns {
                            MicroKernel.tile(
                                TileRow16.self, k: kb, a: aTile,
                                offsets: offsets, aStep: aStep,
                                b: packed
                                    ? panel + (j / 16) * kb * 16 : panel + j,
                                ldb: panelStride, c: cRow + j, ldc: ldc,
                                rows: rows, cols: 16, load: load)
                            j += 16
                        }
                    }
                    if edge > 0 {
                        MicroKernel.tile(
                            TileRow16.self, k: kb, a: aTile, offsets: offsets,
                            aStep: aStep, b: edgePanel, ldb: edgeStride,
                            c: cRow + vectorColumns, ldc: ldc, rows: rows,
                            cols: edge, load: load)
                    }
                    i0 += MicroKernel.rows
                }
                p0 += kb
            }
            j0 += nb
        }
    }

    /// Where step p of a transposed A tile's columns starts: at column
    /// `i0` of table row `rows[p]` when there are row indices, else in A in
    /// place, at `inPlace + p · lda`.
    @inline(__always)
    private static func column(
        _ p: Int, inPlace: UnsafePointer<Float>, table: UnsafePointer<Float>,
        rows: UnsafePointer<Int32>?, lda: Int, i0: Int
    ) -> UnsafePointer<Float> {
        if let rows { return table + Int(rows[p]) * lda + i0 }
        return inPlace + p * lda
    }

    /// Copies `B[rows, depth]` (row stride `ldb`) transposed into
    /// `out[depth, width]`, zero in columns rows..<width.
    ///
    /// Sixteen rows of B at a time, so that the 16 source lines stay in L1
    /// while each output row gets 16 contiguous floats.
    private static func packTransposed(
        _ b: UnsafePointer<Float>, ldb: Int, rows: Int, depth: Int,
        into out: UnsafeMutablePointer<Float>, width: Int, groupStride: Int
    ) {
        var r0 = 0
        while r0 + 16 <= rows {
            // A full group: 16 loads with a fixed count (unrolled) and one
            // vector store per output row.
            let group = out + (r0 / 16) * groupStride
            for p in 0..<depth {
                let src = b + r0 * ldb + p
                var v = SIMD16<Float>()
                for r in 0..<16 { v[r] = src[r &* ldb] }
                UnsafeMutableRawPointer(group + p * width).storeBytes(
                    of: v, as: SIMD16<Float>.self)
            }
            r0 += 16
        }
        while r0 < rows {
            let count = min(16, rows - r0)
            let group = out + (r0 / 16) * groupStride
            for p in 0..<depth {
                let dst = group + p * width
                let src = b + r0 * ldb + p
                for r in 0..<count { dst[r] = src[r * ldb] }
                if count < 16 {
                    (dst + count).update(repeating: 0, count: 16 - count)
                }
            }
            r0 += 16
        }
    }

    /// Copies `depth` rows of `columns` columns of B into panels of 16
    /// columns, each `depth × 16` and contiguous, one after another; the
    /// last is zero-padded to 16.
    private static func packPanels(
        _ b: UnsafePointer<Float>, ldb: Int, columns: Int, depth: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        var j = 0
        var panel = out
        while j < columns {
            let count = min(16, columns - j)
            for p in 0..<depth {
                let dst = panel + p * 16
                dst.update(from: b + p * ldb + j, count: count)
                if count < 16 {
                    (dst + count).update(repeating: 0, count: 16 - count)
                }
            }
            j += 16
            panel += depth * 16
        }
    }

    /// Copies the last `columns` (< 16) columns of `depth` rows of B into
    /// `out[depth, 16]`, zero-padded.
    private static func packEdge(
        _ b: UnsafePointer<Float>, ldb: Int, columns: Int, depth: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        for p in 0..<depth {
            let dst = out + p * 16
            dst.update(from: b + p * ldb, count: columns)
            (dst + columns).update(repeating: 0, count: 16 - columns)
        }
    }
}

/// The products' scratch buffer: room for one packed block of B
/// (`depthBlock × columnBlock` floats) and one packed row tile of A.
///
/// One buffer is kept for reuse, so steady-state products allocate
/// nothing. It is handed out by an atomic exchange: a caller that finds
/// it taken (another thread is inside a product) allocates its own and
/// frees it afterwards, so the products are thread-safe either way.
enum Scratch {
    /// Where a packed row tile of A starts, after a packed block of B.
    static let tileOffset =
        BlockedProduct.depthBlock * BlockedProduct.columnBlock
    static let count = tileOffset + BlockedProduct.depthBlock * MicroKernel.rows

    private static let kept = Atomic<UnsafeMutablePointer<Float>?>(nil)

    static func take() -> UnsafeMutablePointer<Float> {
        if let buffer = kept.exchange(nil, ordering: .acquiring) {
            return buffer
        }
        return .allocate(capacity: count)
    }

    static func give(back buffer: UnsafeMutablePointer<Float>) {
        let (stored, _) = kept.compareExchange(
            expected: nil, desired: buffer, ordering: .releasing)
        if !stored { buffer.deallocate() }
    }
}
