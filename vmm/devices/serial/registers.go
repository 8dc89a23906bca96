package serial

// Register offsets from the UART's base port (COM1 is at layout.COM1). An
// offset can name two registers: reads and writes may reach different ones,
// and while LCR.DLAB is set offsets 0 and 1 reach the divisor latch instead.
const (
	regData = 0 // read: RBR, receive buffer; write: THR, transmit holding. DLAB=1: DLL
	regIER  = 1 // interrupt enable. DLAB=1: DLM
	regIIR  = 2 // read: IIR, interrupt identification; write: FCR, FIFO control
	regLCR  = 3 // line control (word length, parity, stop bits, DLAB)
	regMCR  = 4 // modem control (DTR, RTS, OUT1, OUT2, loopback)
	regLSR  = 5 // line status
	regMSR  = 6 // modem status
	regSCR  = 7 // scratch: one byte of storage, used by probes
)

// IER bits: which conditions may raise the interrupt.
const (
	ierRDA  = 0x01 // received data available (or character timeout)
	ierTHRE = 0x02 // transmit holding register empty
	ierRLS  = 0x04 // receiver line status (overrun and other errors)
	ierMS   = 0x08 // modem status changed
	ierMask = 0x0f // a 16550A has no other IER bits; Linux probes for that
)

// IIR values. Bit 0 clear means an interrupt is pending; bits 1..3 say which
// one, highest priority first: line status, received data, character
// timeout, transmitter empty, modem status. Bits 6..7 are set when the FIFOs
// are enabled, which is how a driver tells a 16550A from older parts.
const (
	iirNone     = 0x01
	iirMS       = 0x00
	iirTHRE     = 0x02
	iirRDA      = 0x04
	iirRLS      = 0x06
	iirTimeout  = 0x0c
	iirFIFOBits = 0xc0
)

// FCR bits. The FCR is write-only; the UART keeps the enable bit and the
// receive trigger level.
const (
	fcrEnable      = 0x01
	fcrClearRX     = 0x02
	fcrClearTX     = 0x04
	fcrTriggerMask = 0xc0
)

// LCR bits.
const lcrDLAB = 0x80 // divisor latch access: offsets 0 and 1 reach DLL and DLM

// MCR bits. In loopback mode the four outputs are wired back to the four
// modem inputs (RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD) and the transmitter
// to the receiver, which lets a driver prove the chip is there.
const (
	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1f
)

// LSR bits.
const (
	lsrDR   = 0x01 // data ready: the receive FIFO holds at least one byte
	lsrOE   = 0x02 // overrun: a byte arrived with the receive FIFO full
	lsrTHRE = 0x20 // the transmit holding register can take a byte
	lsrTEMT = 0x40 // transmitter idle
)

// MSR bits: the high nibble is the state of the modem inputs, the low nibble
// records changes since the last MSR read.
const (
	msrDCTS = 0x01
	msrDDSR = 0x02
	msrTERI = 0x04 // RI went from on to off
	msrDDCD = 0x08
	msrCTS  = 0x10
	msrDSR  = 0x20
	msrRI   = 0x40
	msrDCD  = 0x80
)

// fifoSize is the depth of a 16550A's receive FIFO.
const fifoSize = 16

// defaultDivisor is 9600 baud from the PC's 1.8432 MHz clock. The divisor has
// no effect here (bytes move at once); it is kept so a driver reads back what
// it wrote.
const defaultDivisor = 12

// rxTriggerLevels maps FCR bits 6..7 to the receive FIFO fill level at which
// a 16550A raises "received data available".
var rxTriggerLevels = [4]int{1, 4, 8, 14}
