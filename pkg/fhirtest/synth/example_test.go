package synth_test

import (
	"fmt"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

func ExampleGenerate() {
	d := synth.Generate(synth.Options{Patients: 1, Seed: 1})
	hello := d.Binaries[synth.HelloWorldBinaryID]
	fmt.Println(len(d.Types), d.Types[0], d.Count("Patient"), len(d.Groups[synth.GroupAll]))
	fmt.Printf("%s %q\n", hello.ContentType, hello.Data)
	// Output:
	// 13 Patient 1 1
	// text/plain "hello world"
}
