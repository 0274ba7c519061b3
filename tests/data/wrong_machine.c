/* wrong_machine.o: an ordinary x86-64 object (built with gcc), which a BPF loader must refuse by machine. */
int wrong_machine(int x)
{
	return x + 1;
}
