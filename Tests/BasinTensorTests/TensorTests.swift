import BasinTensor
import XCTest

final class TensorTests: XCTestCase {
    func testMatmulMatchesDefinition() {
        let a = Tensor(shape: [2, 3], storage: [1, 2, 3, 4, 5, 6])
        let b = Tensor(shape: [3, 2], storage: [7, 8, 9, 10, 11, 12])
        XCTAssertEqual(a.matmul(b).storage, [58, 64, 139, 154])
        XCTAssertEqual(a.matmul(a, transposeOther: true).storage, [14, 32, 32, 77])
        XCTAssertEqual(a.matmul(a, transposeSelf: true).shape, [3, 3])
        XCTAssertEqual(a.matmul(a, transposeSelf: true)[0, 0], 17)
        XCTAssertEqual(a.transposed().storage, [1, 4, 2, 5, 3, 6])
    }

    func testElementwiseAndReductions() {
        let a = Tensor(shape: [2, 2], storage: [1, -2, 3, 4])
        let b = Tensor(shape: [2, 2], storage: [0.5, 0.5, 0.5, 0.5])
        XCTAssertEqual((a + b).storage, [1.5, -1.5, 3.5, 4.5])
        XCTAssertEqual((a - b).storage, [0.5, -2.5, 2.5, 3.5])
        XCTAssertEqual(Tensor.lerp(a, b, 0.5).storage, [0.75, -0.75, 1.75, 2.25])
        XCTAssertEqual(a.dot(b), 3)
        XCTAssertEqual(a.sum(), 6)
        XCTAssertEqual(a.maxAbs, 4)
        XCTAssertEqual(a.argmaxRows(), [0, 1])
        XCTAssertEqual(a.sumRows().storage, [4, 2])
        var c = a
        c.addRowVector(Tensor(shape: [2], storage: [10, 20]))
        XCTAssertEqual(c.storage, [11, 18, 13, 24])
        XCTAssertEqual(a.gatherRows([1, 0]).storage, [3, 4, 1, -2])
    }

    func testArgmaxTakesFirstOfTies() {
        XCTAssertEqual(Tensor(shape: [1, 3], storage: [2, 2, 1]).argmaxRows(), [0])
    }

    func testBF16RoundsToNearestEven() {
        // 1 + 2^-8 is halfway between two bf16 values (1 and 1 + 2^-7): ties go to the even one, 1.
        XCTAssertEqual(DTypeConversion.bf16Bits(1 + 1.0 / 256), 0x3F80)
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd mantissa) and 1 + 2^-6: rounds up to even.
        XCTAssertEqual(DTypeConversion.bf16Bits(1 + 3.0 / 256), 0x3F82)
        // Just above the halfway point rounds up.
        XCTAssertEqual(DTypeConversion.bf16Bits(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(DTypeConversion.float(fromBF16: 0x4049), 3.140625)
        XCTAssertTrue(DTypeConversion.float(fromBF16: DTypeConversion.bf16Bits(.nan)).isNaN)
        XCTAssertEqual(DTypeConversion.float(fromBF16: DTypeConversion.bf16Bits(.infinity)), .infinity)
    }

    func testF16RoundsToNearestEven() {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even gives 1.
        XCTAssertEqual(DTypeConversion.f16Bits(1 + 1.0 / 2048), 0x3C00)
        XCTAssertEqual(DTypeConversion.f16Bits(1 + 3.0 / 2048), 0x3C02)
        XCTAssertEqual(DTypeConversion.float(fromF16: 0x3555), 0.333251953125)
        XCTAssertEqual(DTypeConversion.f16Bits(70000), 0x7C00, "overflow goes to infinity")
    }

    func testEncodeDecodeRoundTrip() {
        let t = Tensor(shape: [4], storage: [0.1, -2.5, 1e-3, 65504])
        for dtype in [DType.f32, .f64] {
            let bytes = t.encoded(as: dtype)
            XCTAssertEqual(bytes.count, 4 * dtype.byteSize)
            XCTAssertEqual(bytes.withUnsafeBytes { Tensor(shape: [4], dtype: dtype, bytes: $0) }, t)
        }
        let h = t.roundedThrough(.f16)
        XCTAssertEqual(h.storage[3], 65504)
        XCTAssertEqual(h.storage[1], -2.5)
        XCTAssertEqual(Double(h.storage[0]), 0.0999755859375, accuracy: 1e-12)
        XCTAssertEqual(t.roundedThrough(.bf16).storage[1], -2.5)
    }

    func testSeededGeneratorIsReproducible() {
        var a = SeededGenerator(seed: 42)
        var b = SeededGenerator(seed: 42)
        XCTAssertEqual((0..<5).map { _ in a.next() }, (0..<5).map { _ in b.next() })
        var c = SeededGenerator(seed: 43)
        XCTAssertNotEqual(a.next(), c.next())
        let p = a.permutation(10)
        XCTAssertEqual(p.sorted(), Array(0..<10))
        var sum = 0.0, sq = 0.0
        for _ in 0..<20000 {
            let v = a.normal()
            sum += v
            sq += v * v
        }
        XCTAssertEqual(sum / 20000, 0, accuracy: 0.03)
        XCTAssertEqual(sq / 20000, 1, accuracy: 0.05)
    }

    func testSolveSPD() {
        var a: [Double] = [4, 1, 1, 3]
        var b: [Double] = [1, 2, 0, 1]  // two right-hand sides, row-major 2 x 2
        XCTAssertEqual(BLAS.solveSPD(n: 2, nrhs: 2, a: &a, b: &b), 0)
        // A x = [1, 0] -> x = [3/11, -1/11]; A y = [2, 1] -> y = [5/11, 2/11]
        XCTAssertEqual(b[0], 3.0 / 11, accuracy: 1e-12)
        XCTAssertEqual(b[1], 5.0 / 11, accuracy: 1e-12)
        XCTAssertEqual(b[2], -1.0 / 11, accuracy: 1e-12)
        XCTAssertEqual(b[3], 2.0 / 11, accuracy: 1e-12)
    }
}
