#if arch(x86_64)
    import _Builtin_intrinsics.intel
#endif

/// Loads and stores of up to 16 floats as one `SIMD16<Float>`, for the
/// elementwise loops over rows whose width need not be a multiple of 16
/// (U and 4U are options).
enum Lanes {
    typealias Vector = SIMD16<Float>
    /// One vector register's floats: 16 with AVX-512, else 8 (AVX's 256
    /// bits; SSE-only processors split it in two).
    #if HEADLINE_AVX512
        typealias Register = SIMD16<Float>
    #else
        typealias Register = SIMD8<Float>
    #endif

    /// Calls `body(j, lanes)` for j = 0, 16, 32, ... below `count`, with
    /// `lanes` = min(16, count − j).
    @inline(__always)
    static func forEach(_ count: Int, _ body: (_ j: Int, _ lanes: Int) -> Void)
    {
        var j = 0
        while j < count {
            body(j, min(16, count - j))
            j += 16
        }
    }

    /// `lanes` floats from `p`, zero in the other lanes; reads nothing past
    /// `p + lanes`.
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ lanes: Int) -> Vector {
        if lanes == 16 {
            return UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
        }
        var v = Vector()
        for l in 0..<lanes { v[l] = p[l] }
        return v
    }

    @inline(__always)
    static func load(_ p: UnsafeMutablePointer<Float>, _ lanes: Int) -> Vector {
        load(UnsafePointer(p), lanes)
    }

    /// Stores the first `lanes` lanes of `v` to `p`; writes nothing past
    /// `p + lanes`.
    @inline(__always)
    static func store(
        _ v: Vector, _ p: UnsafeMutablePointer<Float>, _ lanes: Int
    ) {
        if lanes == 16 {
            UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
        } else {
            for l in 0..<lanes { p[l] = v[l] }
        }
    }

    /// The square root of each lane, correctly rounded as IEEE requires
    /// (the same bits as `Float.squareRoot()`).
    ///
    /// `SIMD16.squareRoot()` goes lane by lane through the C library's
    /// `sqrtf`, whose errno handling keeps every loop around it scalar;
    /// SSE's `sqrtps`, which every x86-64 processor has, does four lanes
    /// at once (and the compiler widens it where the target allows).
    @inline(__always)
    static func squareRoot(_ x: Vector) -> Vector {
        #if arch(x86_64)
            let low = x.lowHalf, high = x.highHalf
            return Vector(
                lowHalf: SIMD8(
                    lowHalf: _mm_sqrt_ps(low.lowHalf),
                    highHalf: _mm_sqrt_ps(low.highHalf)),
                highHalf: SIMD8(
                    lowHalf: _mm_sqrt_ps(high.lowHalf),
                    highHalf: _mm_sqrt_ps(high.highHalf)))
        #else
            return x.squareRoot()
        #endif
    }

    /// `out[0..<count] = x[0..<count] + y[0..<count]`.
    @inline(__always)
    static func add(
        _ count: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
        into out: UnsafeMutablePointer<Float>
    ) {
        forEach(count) { j, lanes in
            store(load(x + j, lanes) + load(y + j, lanes), out + j, lanes)
        }
    }

    /// `y[0..<count] += x[0..<count]`.
    @inline(__always)
    static func accumulate(
        _ count: Int, _ x: UnsafePointer<Float>,
        into y: UnsafeMutablePointer<Float>
    ) {
        forEach(count) { j, lanes in
            store(load(y + j, lanes) + load(x + j, lanes), y + j, lanes)
        }
    }
}
