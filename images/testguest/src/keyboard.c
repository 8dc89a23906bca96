/*
 * keyboard.c - Ctrl-Alt-Del through the i8042 keyboard controller.
 *
 * The i8042 has a status port (0x64: bit 0 = a byte waits at port 0x60,
 * bit 1 = the controller is still busy with our last write) and a data
 * port (0x60). It raises IRQ 1 when a scancode arrives. With "translation"
 * on (configuration byte bit 6) it hands out scan code set 1, where a key
 * press is a code and its release the same code | 0x80:
 *   Ctrl 0x1d, Alt 0x38, Delete 0xe0 0x53 (0xe0 prefixes extended keys).
 * A VMM implements Ctrl-Alt-Del by injecting exactly those bytes.
 */
#include "testguest.h"
#include "x86.h"

#define I8042_DATA 0x60
#define I8042_STATUS 0x64
#define STATUS_OUTPUT_FULL 0x01
#define STATUS_INPUT_FULL 0x02

static bool ctrl_down, alt_down, extended;

static bool wait_input_empty(void)
{
	for (int i = 0; i < 10000; i++)
		if (!(inb(I8042_STATUS) & STATUS_INPUT_FULL))
			return true;
	return false;
}

static bool wait_output_full(void)
{
	for (int i = 0; i < 10000; i++)
		if (inb(I8042_STATUS) & STATUS_OUTPUT_FULL)
			return true;
	return false;
}

/* keyboard_init enables keyboard interrupts and translation if the
 * controller answers its "read configuration" command, and routes IRQ 1
 * to the BSP. A controller that reads 0xff is absent: then nothing. */
void keyboard_init(void)
{
	if (inb(I8042_STATUS) == 0xff)
		return;
	for (int i = 0; i < 16 && (inb(I8042_STATUS) & STATUS_OUTPUT_FULL); i++)
		(void)inb(I8042_DATA);
	if (wait_input_empty()) {
		outb(I8042_STATUS, 0x20); /* read configuration byte */
		if (wait_output_full()) {
			uint8_t cfg = inb(I8042_DATA);
			cfg = (uint8_t)((cfg | 0x01 | 0x40) & ~0x10); /* IRQ 1 on, translate, clock on */
			if (wait_input_empty()) {
				outb(I8042_STATUS, 0x60); /* write configuration byte */
				if (wait_input_empty())
					outb(I8042_DATA, cfg);
			}
		}
	}
	ioapic_route(acpi.keyboard_gsi, VEC_KEYBOARD, bsp_apic_id, acpi.keyboard_level_low);
}

static void scancode(uint8_t code)
{
	if (code == 0xe0) {
		extended = true;
		return;
	}
	bool release = code & 0x80;
	uint8_t key = code & 0x7f;
	bool ext = extended;
	extended = false;
	if (key == 0x1d)
		ctrl_down = !release;
	else if (key == 0x38)
		alt_down = !release;
	else if (key == 0x53 && !release && ctrl_down && alt_down) {
		(void)ext; /* Delete (0xe0 0x53) or keypad Del (0x53): both count */
		kprintf("gureum-testguest: ctrl-alt-del, powering off\n");
		acpi_poweroff();
	}
}

/* keyboard_interrupt runs in the IRQ 1 handler on the BSP. */
void keyboard_interrupt(void)
{
	for (int i = 0; i < 16 && (inb(I8042_STATUS) & STATUS_OUTPUT_FULL); i++)
		scancode(inb(I8042_DATA));
}
