/// The characters widgets draw with: Unicode (box drawing, braille, blocks) or an ASCII fallback
/// for non-UTF-8 locales. The backend picks one at start and passes it to widgets in the `RenderContext`.
package struct Glyphs: Hashable, Sendable {
    package var unicode: Bool
    package var horizontal: String
    package var vertical: String
    package var topLeft: String
    package var topRight: String
    package var bottomLeft: String
    package var bottomRight: String
    package var teeDown: String   // ┬
    package var teeUp: String     // ┴
    package var teeRight: String  // ├
    package var teeLeft: String   // ┤
    package var progressFull: String
    package var progressEmpty: String
    package var sliderTrack: String
    package var sliderKnob: String
    package var marker: String
    package var selectionPointer: String
    package var ellipsis: String
    package var upperHalf: String
    package var legendLine: String
    package var scrollUp: String
    package var scrollDown: String

    package static let unicodeSet = Glyphs(
        unicode: true, horizontal: "─", vertical: "│", topLeft: "┌", topRight: "┐",
        bottomLeft: "└", bottomRight: "┘", teeDown: "┬", teeUp: "┴", teeRight: "├", teeLeft: "┤",
        progressFull: "█", progressEmpty: "░", sliderTrack: "─", sliderKnob: "●", marker: "◆",
        selectionPointer: "▶", ellipsis: "…", upperHalf: "▀", legendLine: "━", scrollUp: "▲", scrollDown: "▼")

    package static let asciiSet = Glyphs(
        unicode: false, horizontal: "-", vertical: "|", topLeft: "+", topRight: "+",
        bottomLeft: "+", bottomRight: "+", teeDown: "+", teeUp: "+", teeRight: "+", teeLeft: "+",
        progressFull: "#", progressEmpty: ".", sliderTrack: "-", sliderKnob: "O", marker: "X",
        selectionPointer: ">", ellipsis: "~", upperHalf: "#", legendLine: "-", scrollUp: "^", scrollDown: "v")

    package static func forUnicode(_ on: Bool) -> Glyphs { on ? unicodeSet : asciiSet }
}
