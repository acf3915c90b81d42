import Foundation
import Network

/// A plain Double-precision forward pass of the headline model, written
/// straight from the formulas in the fixtures' README and sharing no code
/// with `HeadlineModel`. Finite differences of its loss are the yardstick
/// for the analytic gradients.
struct ReferenceModel {
    let config: ModelConfig
    let layout: ParameterLayout

    init(_ config: ModelConfig) {
        self.config = config
        layout = ParameterLayout(config)
    }

    private func weight(_ w: [Double], _ name: String) -> ArraySlice<Double> {
        w[layout[name].range]
    }

    /// Total loss Σ_b (wm·l_main + wa·l_aux) · scale.
    func loss(
        _ w: [Double], ids: [Int32], aux: [Double], labels: [Double],
        rows: Int, mainWeight: Double, auxWeight: Double, scale: Double
    ) -> Double {
        let t = config.sequenceLength, e = config.embeddingWidth
        let u = config.lstmUnits, a = config.auxFeatures
        let h = config.denseUnits
        let emb = weight(w, "embedding/embeddings")
        let k = weight(w, "lstm/lstm_cell/kernel")
        let r = weight(w, "lstm/lstm_cell/recurrent_kernel")
        let bias = weight(w, "lstm/lstm_cell/bias")
        func at(_ s: ArraySlice<Double>, _ i: Int) -> Double {
            s[s.startIndex + i]
        }
        func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
        func bce(_ z: Double, _ y: Double) -> Double {
            max(z, 0) - z * y + log1p(exp(-abs(z)))
        }
        var total = 0.0
        for b in 0..<rows {
            var hv = [Double](repeating: 0, count: u)
            var cv = [Double](repeating: 0, count: u)
            for s in 0..<t {
                let id = Int(ids[b * t + s])
                var z = [Double](repeating: 0, count: 4 * u)
                for j in 0..<(4 * u) {
                    var acc = at(bias, j)
                    for p in 0..<e {
                        acc += at(emb, id * e + p) * at(k, p * 4 * u + j)
                    }
                    for p in 0..<u { acc += hv[p] * at(r, p * 4 * u + j) }
                    z[j] = acc
                }
                for j in 0..<u {
                    let i = sigmoid(z[j]), f = sigmoid(z[u + j])
                    let g = tanh(z[2 * u + j]), o = sigmoid(z[3 * u + j])
                    cv[j] = f * cv[j] + i * g
                    hv[j] = o * tanh(cv[j])
                }
            }
            let ak = weight(w, "aux_output/kernel")
            var za = at(weight(w, "aux_output/bias"), 0)
            for p in 0..<u { za += hv[p] * at(ak, p) }
            var x = hv + (0..<a).map { aux[b * a + $0] }
            for layer in 0..<config.denseLayers {
                let name = ModelConfig.denseName(layer)
                let kw = weight(w, "\(name)/kernel")
                let bw = weight(w, "\(name)/bias")
                var y = [Double](repeating: 0, count: h)
                for j in 0..<h {
                    var acc = at(bw, j)
                    for p in 0..<x.count { acc += x[p] * at(kw, p * h + j) }
                    y[j] = max(acc, 0)
                }
                x = y
            }
            let mk = weight(w, "main_output/kernel")
            var zm = at(weight(w, "main_output/bias"), 0)
            for p in 0..<h { zm += x[p] * at(mk, p) }
            total +=
                mainWeight * bce(zm, labels[b])
                + auxWeight * bce(za, labels[b])
        }
        return total * scale
    }
}
